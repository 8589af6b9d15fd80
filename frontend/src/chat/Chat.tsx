/* The conversation: turns with their streamed answers and attachments, inline ask_user
questions, and the composer (./Composer.tsx) below; files dropped anywhere on it are attached. */

import { useEffect, useLayoutEffect, useRef, useState, type DragEvent } from "react";

import type { Attachment, Turn } from "../api/client";
import { askedOf, turnStatus } from "../session/trees";
import type { SessionController } from "../session/useSession";
import { ArtifactList } from "../tree/Artifacts";
import { turnArtifacts, type TurnTree } from "../tree/reducer";
import { StatusChip } from "../tree/TreeView";
import { CopyButton } from "../ui/CopyButton";
import { Markdown } from "../ui/Deferred";
import { Icon } from "../ui/Icon";
import { Composer, DocumentsStrip, useAttachments } from "./Composer";
import { TurnFeedback } from "./Feedback";

function AttachmentList({ attachments }: { attachments: readonly Attachment[] }) {
  return attachments.length ? (
    <div className="attachments">
      {attachments.map((a) => (
        <span key={a.id} className="attachment"><Icon name="file" size={13} /> {a.name}</span>
      ))}
    </div>
  ) : null;
}

function activity(tree: TurnTree | undefined): string {
  if (!tree) return "Starting…";
  const nodes = Object.values(tree.nodes);
  const rlms = nodes.filter((n) => n.kind === "rlm" && n.status === "running");
  if (rlms.length) {
    const deepest = rlms.reduce((a, b) => (b.depth > a.depth ? b : a));
    const n = deepest.iterations.length;
    return `Recursive run at depth ${deepest.depth}${n ? `, iteration ${n}` : ""}…`;
  }
  for (let i = tree.events.length - 1; i >= 0; i--) {
    const e = tree.events[i];
    if (e?.type === "agent_step") return `Using ${e.tool_name}…`;
  }
  return "Thinking…";
}

function AskUser({ question, choices, onAnswer, onDismiss }: { question: string; choices: readonly string[]; onAnswer: (text: string) => void; onDismiss: () => void }) {
  const [text, setText] = useState("");
  const submit = () => {
    if (text.trim()) onAnswer(text.trim());
  };
  return (
    <form
      className="ask-user"
      aria-label="Question from the agent"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <div className="ask-question">
        {question}
      </div>
      {choices.length ? (
        <div className="ask-choices" role="group" aria-label="Choices">
          {choices.map((c) => (
            <button key={c} type="button" className="choice" onClick={() => onAnswer(c)}>
              {c}
            </button>
          ))}
        </div>
      ) : null}
      <div className="ask-row">
        <input
          aria-label="Your answer"
          value={text}
          autoFocus
          onChange={(e) => setText(e.target.value)}
          placeholder="Your answer…"
        />
        <button type="submit" className="primary" aria-label="Send answer" disabled={!text.trim()}>
          Answer
        </button>
        <button type="button" aria-label="Dismiss the question and end the turn" onClick={onDismiss}>
          Dismiss
        </button>
      </div>
    </form>
  );
}

interface TurnViewProps {
  turn: Turn;
  tree: TurnTree | undefined;
  selected: boolean;
  onSelect: () => void;
  onAnswer: (text: string) => void;
  onDismiss: () => void;
  /** Null while a message cannot be sent (a turn in flight): regenerate and edit wait. */
  onResend: ((text: string, attachments: readonly Attachment[]) => void) | null;
  onEdit: (text: string, attachments: readonly Attachment[]) => void;
}

function TurnView({ turn, tree, selected, onSelect, onAnswer, onDismiss, onResend, onEdit }: TurnViewProps) {
  const text = turn.text || tree?.question || "";
  const status = turnStatus(turn.status, tree);
  const answer = tree?.answer || turn.answer || "";
  const question = status === "waiting" ? (tree?.askUser?.question ?? turn.question) : null;
  // Questions asked and answered stay in the transcript, between the message and the answer.
  const answered = askedOf(turn, tree).filter((a) => a.reply !== null || status !== "waiting");
  const running = status === "running";
  // Errors a turn recovered from (a reply retried, a tool that failed) stay in the tree.
  const failed = status === "error" || status === "budget";
  const error = failed ? (tree?.errors.at(-1)?.message ?? turn.error) : null;
  return (
    <article className={`turn ${selected ? "selected" : ""}`} data-testid="turn" data-turn-id={turn.id} data-status={status} aria-label={`Turn ${turn.index}`}>
      <div className="bubble user">
        <div className="bubble-text">{text}</div>
        <AttachmentList attachments={turn.attachments} />
        <div className="turn-actions">
          <CopyButton text={text} label={`Copy message of turn ${turn.index}`} />
          <button type="button" className="icon" aria-label={`Edit the message of turn ${turn.index} and send it again`} title="Edit and resend" onClick={() => onEdit(text, turn.attachments)}>
            <Icon name="edit" size={13} />
          </button>
        </div>
      </div>
      <div className="bubble assistant" aria-live={running ? "polite" : "off"}>
        <div className="bubble-head">
          <StatusChip status={status} />
          <button type="button" className="link" aria-label={`Show turn ${turn.index} in the execution tree`} onClick={onSelect}>
            {selected ? "shown in tree" : "show in tree"}
          </button>
          <ProgramsChip programs={turn.programs} />
        </div>
        {answered.map((a, i) => (
          <div key={i} className="asked" data-testid="asked">
            <p className="asked-question"><Icon name="help" size={13} /> {a.question}</p>
            <p className="asked-reply">{a.reply !== null ? <><span className="muted">You replied:</span> {a.reply}</> : <span className="muted">Not answered (dismissed)</span>}</p>
          </div>
        ))}
        {answer ? <Markdown text={answer} /> : running ? <p className="muted working"><span className="spinner" aria-hidden="true" /> {activity(tree)}</p> : null}
        {tree ? <ArtifactList artifacts={turnArtifacts(tree)} label={`Files written in turn ${turn.index}`} /> : null}
        {tree?.cancelled && !answer ? <p className="muted">Stopped: {tree.cancelled.reason}</p> : null}
        {status === "budget" ? <p className="warn-text">{answer ? "The budget ran out; this is the partial result." : "The budget ran out before any result."}</p> : null}
        {error ? <p className="error-text" role="alert">{error}</p> : null}
        {question ? <AskUser question={question} choices={tree?.askUser?.choices ?? []} onAnswer={onAnswer} onDismiss={onDismiss} /> : null}
        {!running && status !== "waiting" ? (
          <div className="turn-actions">
            {answer ? <CopyButton text={answer} label={`Copy answer of turn ${turn.index}`} /> : null}
            <button type="button" className="icon" aria-label={`Regenerate turn ${turn.index}`} title="Ask the same again, as a new turn" disabled={!onResend} onClick={() => onResend?.(text, turn.attachments)}>
              <Icon name="refresh" size={13} />
            </button>
          </div>
        ) : null}
        {!running && status !== "waiting" ? <TurnFeedback turn={turn} /> : null}
      </div>
    </article>
  );
}

export interface ChatProps {
  sessionId: string;
  session: SessionController;
  selectedTurnId: string | null;
  onSelectTurn: (turnId: string) => void;
  /** The first message of a session, which can name it. */
  onFirstMessage?: (text: string) => void;
  /** The server's limits, shown in the budget popover. */
  defaultLimits?: Record<string, number>;
  /** An imported session: the log it came from. It is read, not continued. */
  importedFrom?: string | null;
  /** The server's models, shown in the model popover. */
  defaultModels?: { root: string; sub: string | null };
}

export function Chat({ sessionId, session, selectedTurnId, onSelectTurn, onFirstMessage, defaultLimits, defaultModels, importedFrom = null }: ChatProps) {
  const attachments = useAttachments(sessionId);
  // A turn's message put back in the composer to edit and send again (count: a new request).
  const [edit, setEdit] = useState<{ text: string; attachments: readonly Attachment[]; count: number } | null>(null);
  const canSend = session.liveTurnId === null && session.pending === null;
  const [dragging, setDragging] = useState(false);
  const scroller = useRef<HTMLDivElement>(null);
  const lastTurn = session.turns.at(-1);
  const lastTree = lastTurn ? session.trees[lastTurn.id] : undefined;

  // A session opens at its latest message, and the newest text stays in view while it
  // streams, unless the reader scrolled up.
  const pinned = useRef(true);
  useEffect(() => {
    pinned.current = true;
  }, [sessionId]);
  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [session.turns, lastTree, session.pending, session.loading]);
  const onScroll = () => {
    const el = scroller.current;
    if (el) pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 160;
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    const files = Array.from(e.dataTransfer.files);
    if (files.length) void attachments.upload(files);
  };

  return (
    <section
      className={`chat ${dragging ? "dragging" : ""}`}
      aria-label="Chat"
      onDragOver={(e) => {
        if (importedFrom === null && e.dataTransfer.types.includes("Files")) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragLeave={(e) => {
        if (e.currentTarget === e.target) setDragging(false);
      }}
      onDrop={onDrop}
    >
      <div className="chat-scroll" ref={scroller} onScroll={onScroll} data-testid="chat-scroll">
        {session.loading && !session.turns.length ? <p className="muted empty">Loading…</p> : null}
        {!session.loading && !session.turns.length && !session.pending ? (
          <div className="empty-chat">
            <h2>Ask anything</h2>
            <p className="muted">
              Attach long documents (drop them here, paste them, or use the paper clip): when they outgrow one context window the agent hands them to the recursive engine, and the tree on the right shows every step.
            </p>
          </div>
        ) : null}
        {session.turns.map((t) => (
          <TurnView key={t.id} turn={t} tree={session.trees[t.id]} selected={t.id === selectedTurnId} onSelect={() => onSelectTurn(t.id)} onAnswer={(text) => session.answer(t.id, text)} onDismiss={() => session.dismiss(t.id)}
            onResend={canSend ? (text, list) => session.send(text, list) : null}
            onEdit={(text, list) => setEdit((e) => ({ text, attachments: list, count: (e?.count ?? 0) + 1 }))} />
        ))}
        {session.pending !== null ? (
          <article className="turn pending" aria-label="Message being sent">
            <div className="bubble user">
              <div className="bubble-text">{session.pending.text}</div>
              <AttachmentList attachments={session.pending.attachments} />
            </div>
            <div className="bubble assistant">
              <p className="muted working"><span className="spinner" aria-hidden="true" /> Starting…</p>
            </div>
          </article>
        ) : null}
      </div>
      {dragging ? <div className="drop-hint" aria-hidden="true">Drop files to attach them</div> : null}
      {importedFrom !== null ? (
        <p className="read-only-note muted" role="status" data-testid="read-only">
          Imported from <code>{importedFrom}</code>: this session can be read, not continued.
        </p>
      ) : (
        <>
          <DocumentsStrip attachments={attachments} />
          <Composer sessionId={sessionId} session={session} attachments={attachments} onFirstMessage={onFirstMessage} defaultLimits={defaultLimits} defaultModels={defaultModels} edit={edit} />
        </>
      )}
    </section>
  );
}

/** The optimised program versions a turn ran (the Optimise page lists them); nothing when it ran
the baseline. */
export function programsText(programs: Record<string, string | null>): string | null {
  const ran = Object.entries(programs).filter(([, id]) => id);
  return ran.length ? ran.map(([target, id]) => `${target} ${id}`).join(", ") : null;
}

function ProgramsChip({ programs }: { programs: Record<string, string | null> }) {
  const text = programsText(programs);
  if (!text) return null;
  return (
    <a className="chip muted small" href="#/optimise" data-testid="turn-programs" title="The optimised program versions this turn ran">
      program {text}
    </a>
  );
}
