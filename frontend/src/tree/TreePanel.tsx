/* The right-hand panel: which turn, its budget, replay of a finished turn, export. */

import { lazy, Suspense, useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";

import { api, errorText, type Turn } from "../api/client";
import type { Limits, LmCallEvent } from "../generated/events";
import { usageHref, type Step } from "../route";
import { download, saveBlob } from "../ui/download";
import { clip } from "../ui/format";
import { buildTree, callKey, findCall, replayStops, type TurnTree } from "./reducer";
import type { Span } from "./timeline";
import { BudgetMeter, StatusChip, TreeActionsContext, TreeBody } from "./TreeView";
import { Icon } from "../ui/Icon";

const CallInspector = lazy(() => import("../trace/CallInspector"));
const TimelineView = lazy(() => import("../trace/TimelineView"));

function isTyping(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

export interface TreePanelProps {
  sessionId: string;
  turns: readonly Turn[];
  tree: TurnTree | undefined;
  selectedTurnId: string | null;
  onSelectTurn: (turnId: string) => void;
  /** The server's limits, shown until the turn reports its own. */
  limits?: Partial<Limits>;
  /** The node and call the address names. */
  step: Pick<Step, "nodeId" | "callId">;
  /** Open a node of the selected turn, or one of its calls (null: close the call). */
  onStep: (step: Pick<Step, "nodeId" | "callId">) => void;
}

export function TreePanel({ sessionId, turns, tree, selectedTurnId, onSelectTurn, limits, step: at, onStep }: TreePanelProps) {
  const [view, setView] = useState<"tree" | "timeline">("tree");
  const [replay, setReplay] = useState<{ turnId: string | null; index: number } | null>(null);
  const [exportError, setExportError] = useState<string | null>(null);
  const stops = useMemo(() => (tree ? replayStops(tree.events) : []), [tree]);
  const finished = !!tree && tree.status !== "running" && tree.status !== "idle";
  const replayIndex = replay && replay.turnId === selectedTurnId && finished ? replay.index : null;

  const shown = useMemo(() => {
    if (!tree || replayIndex === null) return tree;
    const upTo = stops[replayIndex] ?? 0;
    return buildTree(tree.events.filter((e) => e.seq <= upTo), tree.turnId);
  }, [tree, replayIndex, stops]);

  const step = (delta: number) => {
    if (!finished || !stops.length) return;
    const current = replayIndex ?? stops.length;
    const next = Math.max(0, Math.min(stops.length, current + delta));
    setReplay(next >= stops.length ? null : { turnId: selectedTurnId, index: next });
  };

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (isTyping(e.target) || e.altKey || e.ctrlKey || e.metaKey) return;
      if (e.key === "ArrowLeft") {
        e.preventDefault();
        step(-1);
      } else if (e.key === "ArrowRight") {
        e.preventDefault();
        step(1);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const exportAs = (format: "json" | "markdown") => {
    setExportError(null);
    download(api.exportUrl(sessionId, format), `session.${format === "json" ? "json" : "md"}`).catch((e: unknown) =>
      setExportError(errorText(e)),
    );
  };
  const exportTurn = () => {
    if (!tree) return;
    saveBlob(new Blob([JSON.stringify(tree.events, null, 1)], { type: "application/json" }), `turn-${tree.turnId ?? "events"}.json`);
  };

  const openCall = at.callId && tree ? findCall(tree, at.callId) : undefined;
  const actions = useMemo(
    () => ({
      openCall: (call: LmCallEvent) => onStep({ nodeId: call.node_id, callId: callKey(call) }),
      selectedNodeId: at.nodeId,
    }),
    [onStep, at.nodeId],
  );
  const openSpan = (span: Span) => {
    if (span.call) onStep({ nodeId: span.nodeId, callId: callKey(span.call) });
    else {
      onStep({ nodeId: span.nodeId, callId: null });
      setView("tree");
    }
  };
  // While the turn runs the panel keeps its running node's latest cell in view, until the
  // reader scrolls elsewhere; "Follow" (or the next turn) takes it back.
  const scroller = useRef<HTMLDivElement>(null);
  const [following, setFollowing] = useState(true);
  const scrolling = useRef(false);
  const live = !!tree && (tree.status === "running" || tree.status === "idle");
  useEffect(() => setFollowing(true), [selectedTurnId]);
  useLayoutEffect(() => {
    const panel = scroller.current;
    if (!panel || !live || !following || replayIndex !== null) return;
    const running = panel.querySelectorAll('[data-testid=tree-node][data-status="running"]');
    const node = running[running.length - 1];
    if (!node) return;
    const cells = node.querySelectorAll("[data-testid=iteration], [data-testid=agent-step]");
    const target = (cells[cells.length - 1] ?? node) as HTMLElement;
    const box = panel.getBoundingClientRect();
    const rect = target.getBoundingClientRect();
    const delta = rect.bottom > box.bottom ? rect.bottom - box.bottom + 12 : rect.top < box.top ? rect.top - box.top - 12 : 0;
    if (delta) {
      scrolling.current = true;
      panel.scrollTop += delta;
    }
  });
  const onScroll = () => {
    if (scrolling.current) {
      scrolling.current = false;
      return;
    }
    if (live) setFollowing(false);
  };

  // The Export menu closes after a choice, on Escape and on a click outside it.
  const menu = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    const close = (e: Event) => {
      const el = menu.current;
      if (!el?.open) return;
      if (e instanceof KeyboardEvent ? e.key === "Escape" : !el.contains(e.target as Node)) el.open = false;
    };
    document.addEventListener("pointerdown", close);
    document.addEventListener("keydown", close);
    return () => {
      document.removeEventListener("pointerdown", close);
      document.removeEventListener("keydown", close);
    };
  }, []);

  const stopEvent = replayIndex !== null ? tree?.events.find((e) => e.seq === stops[replayIndex]) : undefined;

  return (
    <section className="tree-panel" aria-label="Execution tree">
      <header className="panel-head">
        <h2>Execution tree</h2>
        {turns.length ? (
          <select aria-label="Turn shown in the tree" value={selectedTurnId ?? ""} onChange={(e) => onSelectTurn(e.target.value)}>
            {turns.map((t) => (
              <option key={t.id} value={t.id}>
                Turn {t.index}: {clip(t.user_message || "…", 40)}
              </option>
            ))}
          </select>
        ) : null}
        {tree ? <StatusChip status={tree.status} /> : null}
        <div role="radiogroup" aria-label="Show the turn as" className="segmented view-switch">
          {(["tree", "timeline"] as const).map((v) => (
            <button key={v} type="button" role="radio" aria-checked={view === v} aria-label={`Show the ${v}`} onClick={() => setView(v)}>
              {v === "tree" ? "Tree" : "Timeline"}
            </button>
          ))}
        </div>
        {tree?.turnId ? <a className="tiny" href={usageHref({ kind: "turn", turnId: tree.turnId })} aria-label="Cost of this turn per model">per model</a> : null}
        <details className="menu panel-actions" ref={menu}>
          <summary aria-label="Export">
            <Icon name="download" size={14} /> Export
          </summary>
          <div
            className="menu-items"
            role="group"
            aria-label="Export options"
            onClick={() => {
              if (menu.current) menu.current.open = false;
            }}
          >
            <button type="button" aria-label="Export session as JSON" onClick={() => exportAs("json")}>Session as JSON</button>
            <button type="button" aria-label="Export session as Markdown" onClick={() => exportAs("markdown")}>Session as Markdown</button>
            <button type="button" aria-label="Download this turn's events" onClick={exportTurn} disabled={!tree}>This turn's events</button>
          </div>
        </details>
      </header>
      {exportError ? <div className="banner error" role="alert">{exportError}</div> : null}
      {shown ? <BudgetMeter tree={shown} defaults={limits} /> : null}
      {finished && stops.length ? (
        <div className="replay" role="group" aria-label="Replay">
          <button type="button" aria-label="Replay from the start" onClick={() => setReplay({ turnId: selectedTurnId, index: 0 })}><Icon name="first" size={12} /></button>
          <button type="button" aria-label="Step back (←)" onClick={() => step(-1)}><Icon name="prev" size={12} /></button>
          <button type="button" aria-label="Step forward (→)" onClick={() => step(1)} disabled={replayIndex === null}><Icon name="next" size={12} /></button>
          <span className="replay-pos" aria-live="polite" data-testid="replay-position">
            {replayIndex === null ? `${stops.length} steps · ← to replay` : `step ${replayIndex + 1} / ${stops.length}: ${stopEvent?.type ?? ""}`}
          </span>
          {replayIndex !== null ? (
            <button type="button" aria-label="Leave replay" onClick={() => setReplay(null)}>Done</button>
          ) : null}
        </div>
      ) : null}
      {live && !following ? (
        <button type="button" className="follow" aria-label="Follow the running node" onClick={() => setFollowing(true)}>
          Follow the running node
        </button>
      ) : null}
      <div className="panel-body">
        <div className="panel-scroll" ref={scroller} onScroll={onScroll} data-testid="tree-scroll" data-following={String(live && following)}>
          <TreeActionsContext.Provider value={actions}>
            {!shown ? (
              <p className="muted empty">Ask something: every step of the work shows here, live.</p>
            ) : view === "tree" ? (
              <TreeBody tree={shown} />
            ) : (
              <Suspense fallback={<p className="muted">Loading the timeline…</p>}>
                <TimelineView tree={shown} onOpen={openSpan} selectedNodeId={at.nodeId} />
              </Suspense>
            )}
          </TreeActionsContext.Provider>
        </div>
        {openCall && tree ? (
          <Suspense fallback={null}>
            <CallInspector call={openCall} tree={tree} onOpen={actions.openCall} onClose={() => onStep({ nodeId: at.nodeId, callId: null })} />
          </Suspense>
        ) : null}
      </div>
    </section>
  );
}
