/* Under a finished answer: thumbs up or down with an optional comment and, with a thumbs down, the
answer it should have given (stored on the turn, and on its MLflow trace when tracing is on; the
feedback datasets of `fleet optimize` are made of them), and the trace id with a copy button. */

import { useRef, useState } from "react";

import { api, type Turn } from "../api/client";
import { Icon } from "../ui/Icon";
import { feedbackProblem, shortTrace } from "./feedback";

type Sent = { state: "idle" } | { state: "sending" } | { state: "sent"; thumbsUp: boolean } | { state: "failed"; message: string };

function TraceId({ traceId }: { traceId: string }) {
  const [copied, setCopied] = useState<string | null>(null);
  const text = useRef<HTMLElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(traceId);
      setCopied("copied");
    } catch {
      // No clipboard (a page served over plain HTTP to another host): select it for Ctrl+C.
      const range = document.createRange();
      if (text.current) range.selectNodeContents(text.current);
      const selection = getSelection();
      selection?.removeAllRanges();
      selection?.addRange(range);
      setCopied("selected: press Ctrl+C");
    }
    setTimeout(() => setCopied(null), 2500);
  };
  return (
    <span className="trace" data-testid="trace-id">
      MLflow trace{" "}
      <code ref={text} title={traceId} data-trace-id={traceId}>
        {copied?.startsWith("selected") ? traceId : shortTrace(traceId)}
      </code>
      <button type="button" className="icon" aria-label="Copy the MLflow trace id" title="Copy the trace id" onClick={() => void copy()}>
        <Icon name="copy" size={13} />
      </button>
      {copied ? <span className="muted" role="status">{copied}</span> : null}
    </span>
  );
}

export function TurnFeedback({ turn }: { turn: Turn }) {
  const [choice, setChoice] = useState<boolean | null>(null);
  const [comment, setComment] = useState("");
  const [corrected, setCorrected] = useState("");
  const [sent, setSent] = useState<Sent>({ state: "idle" });
  const done = sent.state === "sent";

  const pick = (thumbsUp: boolean) => {
    if (done) return;
    setChoice(choice === thumbsUp ? null : thumbsUp);
    if (sent.state === "failed") setSent({ state: "idle" });
  };

  const submit = () => {
    if (choice === null) return;
    setSent({ state: "sending" });
    api.sendFeedback(turn.id, choice, comment.trim() || null, choice ? null : corrected.trim() || null).then(
      () => setSent({ state: "sent", thumbsUp: choice }),
      (e: unknown) => setSent({ state: "failed", message: feedbackProblem(e) }),
    );
  };

  return (
    <div className="turn-feedback" data-testid="turn-feedback">
      <div className="feedback-row">
        <div className="thumbs" role="group" aria-label={`Feedback on turn ${turn.index}`}>
          <button type="button" className={`icon ${choice === true ? "chosen" : ""}`} aria-label="Good answer" aria-pressed={choice === true} title="Good answer" disabled={done} onClick={() => pick(true)}>
            <Icon name="thumbsUp" size={15} />
          </button>
          <button type="button" className={`icon ${choice === false ? "chosen" : ""}`} aria-label="Bad answer" aria-pressed={choice === false} title="Bad answer" disabled={done} onClick={() => pick(false)}>
            <Icon name="thumbsDown" size={15} />
          </button>
        </div>
        {turn.trace_id ? <TraceId traceId={turn.trace_id} /> : null}
      </div>
      {choice !== null && !done ? (
        <form
          className="feedback-form"
          aria-label="Feedback comment"
          onSubmit={(e) => {
            e.preventDefault();
            submit();
          }}
        >
          <textarea
            aria-label="Comment (optional)"
            placeholder={choice ? "What was good? (optional)" : "What went wrong? (optional)"}
            rows={2}
            value={comment}
            autoFocus
            onChange={(e) => setComment(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
                e.preventDefault();
                submit();
              } else if (e.key === "Escape") {
                e.stopPropagation();
                setChoice(null);
              }
            }}
          />
          {choice === false ? (
            <textarea
              aria-label="Corrected answer (optional)"
              placeholder="The answer it should have given (optional): optimisation learns from it"
              rows={2}
              value={corrected}
              onChange={(e) => setCorrected(e.target.value)}
            />
          ) : null}
          <div className="feedback-actions">
            <button type="submit" className="primary" aria-label="Send feedback" disabled={sent.state === "sending"}>
              {sent.state === "sending" ? "Sending…" : "Send feedback"}
            </button>
            <button type="button" aria-label="Cancel feedback" onClick={() => setChoice(null)}>Cancel</button>
          </div>
        </form>
      ) : null}
      {sent.state === "sent" ? (
        <p className="ok-text small" role="status">Thanks: your {sent.thumbsUp ? "thumbs up" : "thumbs down"} is recorded on the turn.</p>
      ) : null}
      {sent.state === "failed" ? <p className="warn-text small" role="alert" data-testid="feedback-problem">{sent.message}</p> : null}
    </div>
  );
}
