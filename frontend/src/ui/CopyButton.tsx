/* A button that copies a text, and says so. */

import { useState } from "react";

import { Icon } from "./Icon";

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [state, setState] = useState<string | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setState("copied");
    } catch {
      // No clipboard (a page served over plain HTTP to another host).
      setState("copy failed: select the text");
    }
    setTimeout(() => setState(null), 2500);
  };
  return (
    <span className="copy">
      <button type="button" className="icon" aria-label={label} title={label} onClick={() => void copy()}>
        <Icon name="copy" size={13} />
      </button>
      {state ? <span className="muted tiny" role="status">{state}</span> : null}
    </span>
  );
}
