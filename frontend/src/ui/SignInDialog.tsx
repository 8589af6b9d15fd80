/* Sign-in when the server wants a token (the server's own, FLEET_AUTH=local; or a user's API
token, FLEET_AUTH=token): the token is checked with the server before it is kept (localStorage),
then sent as a bearer header and as ?token= on the socket. The URL `fleet web` prints carries the
server's token and signs in without this dialog (adoptUrlToken). */

import { useEffect, useRef, useState } from "react";

import { errorText, getToken, verifyToken } from "../api/client";

export interface SignInDialogProps {
  open: boolean;
  /** The server's reason for the 401 that opened the dialog. */
  reason: string | null;
  onSignedIn: (token: string) => void;
}

export function SignInDialog({ open, reason, onSignedIn }: SignInDialogProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const [value, setValue] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);

  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) {
      d.showModal();
      setValue("");
      // A kept token the server refused: say so, rather than only asking again.
      setProblem(getToken() && reason ? `Your saved token was not accepted: ${reason}.` : null);
    }
    if (!open && d.open) d.close();
  }, [open, reason]);

  const submit = async () => {
    const token = value.trim();
    if (!token) return;
    setChecking(true);
    setProblem(null);
    try {
      await verifyToken(token);
      onSignedIn(token);
    } catch (e) {
      setProblem(`The server did not accept this token: ${errorText(e)}.`);
    } finally {
      setChecking(false);
    }
  };

  return (
    // Without a token nothing on the page works: Escape does not close this one.
    <dialog ref={ref} className="dialog sign-in" aria-labelledby="sign-in-title" onCancel={(e) => e.preventDefault()}>
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <h2 id="sign-in-title">Sign in</h2>
        <p>This server asks for an API token. Ask its admin for one, or make one where the server runs (the user once, then a token):</p>
        <pre className="preview">{"fleet users add YOUR_NAME\nfleet tokens create YOUR_NAME"}</pre>
        <p>Started the server yourself with <code>fleet web</code>? Open the address it printed (<code>…/?token=…</code>), or paste the token from it here.</p>
        <label className="field">
          <span className="field-label">API token</span>
          <input type="password" autoComplete="current-password" autoFocus value={value} onChange={(e) => setValue(e.target.value)} placeholder="fleet_…" />
          <span className="field-hint">Kept in this browser until you sign out.</span>
        </label>
        {problem ? <p className="error-text" role="alert">{problem}</p> : null}
        <div className="actions">
          <button type="submit" className="primary" aria-label="Sign in with this token" disabled={!value.trim() || checking}>
            {checking ? "Checking…" : "Sign in"}
          </button>
        </div>
      </form>
    </dialog>
  );
}
