/* The waterfall of a turn (tree/timeline.ts): one row per span, nested as in the tree, a batch
of concurrent calls on rows side by side, the critical path marked. Hover a bar for its times;
click it to open the step (a call opens in the inspector, anything else in the tree). */

import { useMemo, useState } from "react";

import type { TurnTree } from "../tree/reducer";
import { buildTimeline, type Span } from "../tree/timeline";
import { fmtSeconds } from "../ui/format";
import "./trace.css";

function ticks(duration: number): number[] {
  if (duration <= 0) return [0];
  const raw = duration / 6;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let t = 0; t <= duration + 1e-9; t += step) out.push(t);
  return out;
}

function describe(span: Span): string {
  return `${span.label}: ${fmtSeconds(span.end - span.start)} (from ${fmtSeconds(span.start)} to ${fmtSeconds(span.end)})`;
}

/** A bar's tooltip: its times, and what a child RLM was asked. */
function tooltip(span: Span, tree: TurnTree): string {
  const query = span.kind === "node" ? tree.nodes[span.nodeId]?.query : null;
  return query ? `${describe(span)}\nquery: ${query}` : describe(span);
}

export interface TimelineViewProps {
  tree: TurnTree;
  /** A span clicked: the node it belongs to, and its call if it is one. */
  onOpen: (span: Span) => void;
  selectedNodeId: string | null;
}

export default function TimelineView({ tree, onOpen, selectedNodeId }: TimelineViewProps) {
  const timeline = useMemo(() => buildTimeline(tree), [tree]);
  const critical = useMemo(() => new Set(timeline.critical), [timeline]);
  const [hovered, setHovered] = useState<Span | null>(null);
  if (!timeline.rows.length) return <p className="muted empty">No events yet.</p>;
  const scale = timeline.duration > 0 ? 100 / timeline.duration : 0;
  const criticalTime = timeline.critical
    .map((id) => timeline.spans[id] as Span)
    .filter((s) => s.kind === "node" && s.level === 0)
    .reduce((n, s) => n + (s.end - s.start), 0);

  return (
    <div className="timeline" data-testid="timeline" aria-label="Timeline of the turn">
      <div className="timeline-status" aria-live="polite" data-testid="timeline-hover">
        {hovered ? describe(hovered) : `${fmtSeconds(timeline.duration)} in all · critical path ${fmtSeconds(criticalTime)} · hover a bar for its times, click to open it`}
      </div>
      <div className="timeline-grid">
        <div className="timeline-axis" aria-hidden="true">
          <span className="timeline-label" />
          <div className="timeline-track">
            {ticks(timeline.duration).map((t) => (
              <span key={t} className="tick" style={{ left: `${t * scale}%` }}>
                {fmtSeconds(t)}
              </span>
            ))}
          </div>
        </div>
        {timeline.rows.map((row, i) => {
          const first = row.spans[0] as Span;
          const lane = row.spans.length > 1 || first.kind === "call";
          return (
            <div key={i} className={`timeline-row kind-${first.kind}`} data-testid="timeline-row">
              <span className="timeline-label" style={{ paddingLeft: `${row.level * 10}px` }} title={first.label}>
                {lane && row.spans.length > 1 ? `${row.spans.length} × ${first.call?.role ?? "call"}` : first.label}
              </span>
              <div className="timeline-track">
                {row.spans.map((s) => (
                  <button
                    key={s.id}
                    type="button"
                    className={`bar bar-${s.kind} ${critical.has(s.id) ? "critical" : ""} ${s.status ? `status-${s.status}` : ""} ${s.kind === "node" && s.nodeId === selectedNodeId ? "selected" : ""}`}
                    style={{ left: `${s.start * scale}%`, width: `max(3px, ${(s.end - s.start) * scale}%)` }}
                    data-testid="timeline-bar"
                    data-span={s.id}
                    data-kind={s.kind}
                    data-critical={critical.has(s.id) ? "true" : "false"}
                    aria-label={describe(s)}
                    title={tooltip(s, tree)}
                    onMouseEnter={() => setHovered(s)}
                    onMouseLeave={() => setHovered(null)}
                    onFocus={() => setHovered(s)}
                    onBlur={() => setHovered(null)}
                    onClick={() => onOpen(s)}
                  />
                ))}
              </div>
            </div>
          );
        })}
      </div>
      <p className="muted tiny timeline-legend">
        <span className="swatch critical" /> critical path · <span className="swatch bar-node" /> node · <span className="swatch bar-iteration" /> iteration · <span className="swatch bar-code" /> code · <span className="swatch bar-call" /> model call
      </p>
    </div>
  );
}
