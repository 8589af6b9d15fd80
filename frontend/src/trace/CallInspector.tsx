/* One model call opened from the tree or the timeline: its request messages with their roles
(a long context folded until asked for), its reply, copy buttons, and its model, parameters,
tokens, cost, latency, finish reason and retries. The request and reply come from the call's
stored record (GET /turns/{id}/calls/{call_id}); a call without one says why. */

import { useEffect, useState } from "react";

import { ApiError, api, errorText, type LmCallDetail } from "../api/client";
import type { LmCallEvent } from "../generated/events";
import type { TurnTree } from "../tree/reducer";
import { CopyButton } from "../ui/CopyButton";
import { Icon } from "../ui/Icon";
import { attemptsOf, callFacts, fold, missingPrompt, transcript } from "./calls";
import "./trace.css";

type Loaded = { callId: string; detail: LmCallDetail | null; failure: string | null };

function FoldedText({ text, label }: { text: string; label: string }) {
  const [open, setOpen] = useState(false);
  const { head, hidden } = fold(text);
  return (
    <div className="folded">
      <pre className="message-text">{open || !hidden ? text : `${head}…`}</pre>
      {hidden ? (
        <button type="button" className="link-button" aria-expanded={open} aria-label={`${open ? "Fold" : "Show all of"} ${label}`} onClick={() => setOpen(!open)}>
          {open ? "Fold" : `Show ${hidden.toLocaleString()} more characters`}
        </button>
      ) : null}
    </div>
  );
}

export interface CallInspectorProps {
  call: LmCallEvent;
  /** The call's turn: where its other attempts are found. */
  tree: TurnTree;
  onOpen: (call: LmCallEvent) => void;
  onClose: () => void;
}

export default function CallInspector({ call, tree, onOpen, onClose }: CallInspectorProps) {
  const [loaded, setLoaded] = useState<Loaded | null>(null);
  const callId = call.call_id;

  useEffect(() => {
    if (callId === null) return;
    let live = true;
    api.callDetail(call.turn_id, callId).then(
      (detail) => live && setLoaded({ callId, detail, failure: null }),
      (e: unknown) =>
        live && setLoaded({ callId, detail: null, failure: e instanceof ApiError && e.status === 404 ? "the server has no record of this call" : errorText(e) }),
    );
    return () => {
      live = false;
    };
  }, [call.turn_id, callId]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose]);

  const current = loaded && loaded.callId === callId ? loaded : null;
  const detail = current?.detail ?? null;
  const loading = callId !== null && current === null;
  const missing = loading ? null : missingPrompt(call, detail, current?.failure ?? null);
  const attempts = attemptsOf(tree, call);
  const params = detail && Object.keys(detail.params).length ? JSON.stringify(detail.params, null, 2) : null;

  return (
    <dialog open className="call-inspector" aria-label="Model call" data-testid="call-inspector" data-call-seq={call.seq}>
      <header className="inspector-head">
        <h3>
          <b>{call.role}</b> call · {call.model}
        </h3>
        {detail ? <CopyButton text={transcript(detail)} label="Copy the request and reply" /> : null}
        <button type="button" className="icon" aria-label="Close the call (Esc)" onClick={onClose}><Icon name="close" /></button>
      </header>
      <div className="inspector-body">
        <dl className="facts" aria-label="Call facts">
          {callFacts(call, detail).map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd data-fact={k}>{v}</dd>
            </div>
          ))}
        </dl>
        {attempts.length > 1 ? (
          <nav className="attempts" aria-label="Attempts of this call">
            attempts:{" "}
            {attempts.map((a) => (
              <button
                key={a.seq}
                type="button"
                className="link-button"
                aria-current={a.seq === call.seq ? "true" : undefined}
                aria-label={`Open attempt ${a.attempt}${a.http_status !== null ? `, HTTP ${a.http_status}` : a.error ? ", failed" : ""}`}
                onClick={() => onOpen(a)}
              >
                {a.attempt}
                {a.http_status !== null ? ` (HTTP ${a.http_status})` : a.error ? " (failed)" : ""}
              </button>
            ))}
          </nav>
        ) : null}
        {call.error || detail?.error ? <div className="node-error" role="alert">{detail?.error ?? call.error}</div> : null}
        {params ? (
          <details className="params">
            <summary>Parameters</summary>
            <pre className="message-text">{params}</pre>
          </details>
        ) : null}
        {loading ? <p className="muted">Loading the request…</p> : null}
        {missing !== null ? (
          <div className="banner warn" role="status" data-testid="prompt-missing">prompt not captured: {missing}</div>
        ) : null}
        {detail?.captured ? (
          <ol className="messages" aria-label="Request messages">
            {detail.messages.map((m, i) => (
              <li key={i} className={`message role-${m.role}`} data-testid="call-message" data-role={m.role}>
                <div className="message-head">
                  <span className="message-role">{m.role}</span>
                  <span className="muted tiny">{m.content.length.toLocaleString()} chars</span>
                  <CopyButton text={m.content} label={`Copy the ${m.role} message ${i + 1}`} />
                </div>
                <FoldedText text={m.content} label={`the ${m.role} message ${i + 1}`} />
              </li>
            ))}
          </ol>
        ) : missing !== null ? (
          <>
            <div className="preview-label">prompt (preview from the event)</div>
            <pre className="message-text">{call.prompt_preview || "(empty)"}</pre>
          </>
        ) : null}
        {detail?.reply != null ? (
          <div className="message role-reply" data-testid="call-reply">
            <div className="message-head">
              <span className="message-role">reply</span>
              <CopyButton text={detail.reply} label="Copy the reply" />
            </div>
            <FoldedText text={detail.reply} label="the reply" />
          </div>
        ) : missing !== null ? (
          <>
            <div className="preview-label">reply (preview from the event)</div>
            <pre className="message-text">{call.response_preview || "(empty)"}</pre>
          </>
        ) : null}
      </div>
    </dialog>
  );
}
