/* The message box: text, attachments (click; the chat around it takes drops and pastes through
`useAttachments`), the budget popover, send and stop. A message the server refused comes back
to the box with its attachments. */

import { useCallback, useEffect, useRef, useState, type ClipboardEvent, type KeyboardEvent } from "react";

import { api, errorText, type Attachment, type DocumentInfo } from "../api/client";
import { waitingTurn } from "../session/trees";
import type { SessionController } from "../session/useSession";
import { fmtBytes } from "../ui/format";
import { Icon } from "../ui/Icon";
import { BudgetPopover } from "./BudgetPopover";
import { ModelPopover } from "./ModelPopover";
import { toLimits, type LimitDraft } from "./limits";
import { uploadError } from "./uploads";

/** An attachment of the message being written; `size_bytes` when uploaded from this page. */
export type Attached = Attachment & { size_bytes?: number };

export interface Attachments {
  list: readonly Attached[];
  /** Every document of the session, attached (in the agent's view) or detached. */
  documents: readonly DocumentInfo[];
  uploading: number;
  error: string | null;
  upload: (files: readonly File[]) => Promise<void>;
  /** Takes a document off the next message and detaches it: the agent no longer sees it. */
  remove: (id: string) => void;
  /** Attaches a detached document again, or detaches one. */
  setAttached: (id: string, attached: boolean) => Promise<void>;
  /** Deletes a document of the session. */
  deleteDocument: (id: string) => Promise<void>;
  clear: () => void;
  /** Puts back the attachments of a refused message, unless others were attached since. */
  restore: (list: readonly Attached[]) => void;
  /** Sets the attachments (a message taken back to edit). */
  replace: (list: readonly Attached[]) => void;
}

/** The documents attached to the next message (each file is uploaded to the session at once),
 * and the session's documents, as the server lists them. */
export function useAttachments(sessionId: string): Attachments {
  const [list, setList] = useState<readonly Attached[]>([]);
  const [documents, setDocuments] = useState<readonly DocumentInfo[]>([]);
  const [uploading, setUploading] = useState(0);
  const [error, setError] = useState<string | null>(null);

  const refresh = useCallback(async () => {
    try {
      setDocuments(await api.listDocuments(sessionId));
    } catch (e) {
      setError(errorText(e));
    }
  }, [sessionId]);

  useEffect(() => {
    setList([]);
    setDocuments([]);
    setError(null);
    void refresh();
  }, [sessionId, refresh]);

  const upload = async (files: readonly File[]) => {
    setError(null);
    for (const file of files) {
      setUploading((n) => n + 1);
      try {
        const doc = await api.uploadDocument(sessionId, file);
        setList((l) => [...l.filter((d) => d.id !== doc.id), doc]);
      } catch (e) {
        setError(uploadError(file.name, errorText(e)));
      } finally {
        setUploading((n) => n - 1);
      }
    }
    await refresh();
  };

  const act = async (action: () => Promise<unknown>) => {
    setError(null);
    try {
      await action();
    } catch (e) {
      setError(errorText(e));
    }
    await refresh();
  };

  const restore = useCallback((back: readonly Attached[]) => setList((l) => (l.length ? l : back)), []);
  const replace = useCallback((next: readonly Attached[]) => setList(next), []);
  return {
    list,
    documents,
    uploading,
    error,
    upload,
    remove: (id) => {
      setList((l) => l.filter((d) => d.id !== id));
      void act(() => api.setDocumentAttached(id, false));
    },
    setAttached: (id, attached) => act(() => api.setDocumentAttached(id, attached)),
    deleteDocument: (id) => {
      setList((l) => l.filter((d) => d.id !== id));
      return act(() => api.deleteDocument(id));
    },
    clear: () => setList([]),
    restore,
    replace,
  };
}

/** The session's documents above the message box: what the agent sees, what is detached. */
export function DocumentsStrip({ attachments }: { attachments: Attachments }) {
  const { documents } = attachments;
  if (!documents.length) return null;
  const shown = documents.filter((d) => d.attached).length;
  return (
    <div className="session-documents" role="group" aria-label="Documents in this session" data-testid="session-documents">
      <span className="muted" title="The agent sees the attached documents; a detached one is kept but hidden from it">
        {shown} of {documents.length} document{documents.length === 1 ? "" : "s"} in view
      </span>
      {documents.map((d) => (
        <span key={d.id} className={`attachment ${d.attached ? "" : "detached"}`} data-testid="session-document" data-attached={String(d.attached)}>
          <Icon name="file" size={13} /> {d.name} <span className="muted">{fmtBytes(d.size_bytes)}{d.encoding ? ` · converted from ${d.encoding}` : ""}{d.attached ? "" : " · detached"}</span>
          {d.attached ? (
            <button type="button" className="icon" aria-label={`Detach ${d.name}: keep it, hide it from the agent`} title="Detach: keep it, hide it from the agent" onClick={() => void attachments.setAttached(d.id, false)}>
              <Icon name="close" size={12} />
            </button>
          ) : (
            <button type="button" className="icon" aria-label={`Attach ${d.name} again`} title="Attach again" onClick={() => void attachments.setAttached(d.id, true)}>
              <Icon name="plus" size={12} />
            </button>
          )}
          <button type="button" className="icon" aria-label={`Delete ${d.name}`} title="Delete the document" onClick={() => void attachments.deleteDocument(d.id)}>
            <Icon name="trash" size={12} />
          </button>
        </span>
      ))}
    </div>
  );
}

export interface ComposerProps {
  sessionId: string;
  session: SessionController;
  attachments: Attachments;
  /** The first message of a session, which can name it. */
  onFirstMessage?: (text: string) => void;
  /** The server's limits, shown in the budget popover. */
  defaultLimits?: Record<string, number>;
  /** The server's models, shown in the model popover. */
  defaultModels?: { root: string; sub: string | null };
  /** A turn's message to edit and send again: it replaces the draft and its attachments. */
  edit?: { text: string; attachments: readonly Attachment[]; count: number } | null;
}

export function Composer({ sessionId, session, attachments, onFirstMessage, defaultLimits, defaultModels, edit }: ComposerProps) {
  const [draft, setDraft] = useState("");
  const [limitDraft, setLimitDraft] = useState<LimitDraft>({});
  const fileInput = useRef<HTMLInputElement>(null);
  const textarea = useRef<HTMLTextAreaElement>(null);
  const live = session.liveTurnId !== null;
  // A question waits: the session takes no other message until it is answered or dismissed.
  const waiting = waitingTurn(session.turns, session.trees) !== null;
  const busy = live || waiting || session.pending !== null;
  const { list, uploading, error } = attachments;

  useEffect(() => {
    setDraft("");
    textarea.current?.focus();
  }, [sessionId]);

  // A message the server refused (busy, a bad budget) comes back to the box, not lost.
  const { returned } = session;
  const { restore } = attachments;
  useEffect(() => {
    if (!returned) return;
    setDraft((d) => d || returned.text);
    restore(returned.attachments);
  }, [returned, restore]);

  // A message while a turn runs or waits is refused here, as the server would, and said so.
  const [refusal, setRefusal] = useState<string | null>(null);
  useEffect(() => {
    if (!busy) setRefusal(null);
  }, [busy]);
  const { replace } = attachments;
  useEffect(() => {
    if (!edit) return;
    setDraft(edit.text);
    replace(edit.attachments);
    textarea.current?.focus();
  }, [edit, replace]);

  const send = () => {
    const text = draft.trim();
    if (text && busy && session.pending === null) {
      setRefusal(waiting ? "A question is waiting: answer the question above or dismiss it first. Your message stays here." : "Busy: a turn is running. Wait for it to finish or stop it (Esc); your message stays here.");
      return;
    }
    if (!text || busy || uploading) return;
    if (!session.turns.length) onFirstMessage?.(text);
    session.send(text, list, toLimits(limitDraft));
    setDraft("");
    attachments.clear();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  const onPaste = (e: ClipboardEvent<HTMLTextAreaElement>) => {
    const files = Array.from(e.clipboardData.files);
    if (files.length) {
      e.preventDefault();
      void attachments.upload(files);
    }
  };

  return (
    <form
      className="composer"
      aria-label="Message composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      {list.length || uploading || error ? (
        <div className="attachments" aria-label="Attachments">
          {list.map((d) => (
            <span key={d.id} className="attachment" data-testid="attachment">
              <Icon name="file" size={13} /> {d.name} {d.size_bytes !== undefined ? <span className="muted">{fmtBytes(d.size_bytes)}</span> : null}
              <button type="button" className="icon" aria-label={`Remove attachment ${d.name}`} title="Remove: the agent no longer sees it (it stays detached in the session)" onClick={() => attachments.remove(d.id)}>
                <Icon name="close" size={12} />
              </button>
            </span>
          ))}
          {uploading ? <span className="muted">Uploading {uploading}…</span> : null}
          {error ? <span className="error-text" role="alert">{error}</span> : null}
        </div>
      ) : null}
      {refusal ? (
        <p className="error-text composer-hint" role="alert" data-testid="composer-refusal">
          {refusal}
        </p>
      ) : waiting ? (
        <p className="composer-hint" role="status" data-testid="composer-hint">
          Answer the question above or dismiss it.
        </p>
      ) : null}
      <div className="composer-row">
        <button type="button" className="icon big" aria-label="Attach documents" title="Attach documents" onClick={() => fileInput.current?.click()}>
          <Icon name="clip" size={18} />
        </button>
        <input
          ref={fileInput}
          type="file"
          multiple
          hidden
          aria-label="Choose documents to attach"
          data-testid="file-input"
          onChange={(e) => {
            const files = Array.from(e.target.files ?? []);
            e.target.value = "";
            void attachments.upload(files);
          }}
        />
        <textarea
          ref={textarea}
          aria-label="Message"
          placeholder={waiting ? "Answer the question above or dismiss it" : busy ? "Working… (Esc stops)" : "Ask something… (Enter sends)"}
          value={draft}
          rows={Math.min(8, Math.max(1, draft.split("\n").length))}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={onKeyDown}
          onPaste={onPaste}
        />
        <ModelPopover sessionId={sessionId} defaults={defaultModels} />
        <BudgetPopover draft={limitDraft} onChange={setLimitDraft} defaults={defaultLimits} />
        {live ? (
          <button type="button" className="stop" aria-label="Stop the running turn (Esc)" onClick={session.cancel}>
            <Icon name="stop" size={14} /> Stop
          </button>
        ) : (
          <button type="submit" className="primary" aria-label="Send message" disabled={!draft.trim() || busy || uploading > 0}>
            Send
          </button>
        )}
      </div>
    </form>
  );
}
