/* The right-hand panel: which turn, its budget, replay of a finished turn, export. */

import { useEffect, useMemo, useState } from "react";

import { api, errorText, type Turn } from "../api/client";
import type { Limits } from "../generated/events";
import { download, saveBlob } from "../ui/download";
import { clip } from "../ui/format";
import { buildTree, replayStops, type TurnTree } from "./reducer";
import { BudgetMeter, StatusChip, TreeBody } from "./TreeView";
import { Icon } from "../ui/Icon";

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
}

export function TreePanel({ sessionId, turns, tree, selectedTurnId, onSelectTurn, limits }: TreePanelProps) {
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
        <details className="menu panel-actions">
          <summary aria-label="Export">
            <Icon name="download" size={14} /> Export
          </summary>
          <div
            className="menu-items"
            role="group"
            aria-label="Export options"
            onClick={(e) => {
              (e.currentTarget.parentElement as HTMLDetailsElement).open = false;
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
      <div className="panel-scroll">
        {shown ? <TreeBody tree={shown} /> : <p className="muted empty">Ask something: every step of the work shows here, live.</p>}
      </div>
    </section>
  );
}
