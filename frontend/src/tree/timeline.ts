/* The waterfall of one turn, drawn from the same fold as the tree (reducer.ts): every node,
agent step, iteration, code cell and model call as a span on one time axis, nested as in the
tree, and the critical path through them.

Times: an event's `ts` is when it was emitted, so a model call ran from `ts - latency_s` to `ts`
and a code cell from `ts - duration_s` to `ts`; a node from its first event to its last. Spans
are in seconds from the turn's first event. */

import type { LmCallEvent } from "../generated/events";
import type { AgentStep, IterationCell, TreeNode, TurnTree } from "./reducer";

export type SpanKind = "node" | "step" | "iteration" | "code" | "call";

export interface Span {
  /** Unique in the turn: what a click selects and the critical path names. */
  id: string;
  kind: SpanKind;
  label: string;
  start: number;
  end: number;
  /** How deep in the tree (0: a root node). */
  level: number;
  parent: string | null;
  children: string[];
  /** The node the span belongs to (a call's, a cell's node). */
  nodeId: string;
  call: LmCallEvent | null;
  status: string | null;
}

export interface Row {
  level: number;
  /** Spans on this row: one, or several sub-calls that never overlap in time. */
  spans: Span[];
}

export interface Timeline {
  /** The absolute time (Unix seconds) of 0 on the axis. */
  origin: number;
  duration: number;
  spans: Record<string, Span>;
  roots: string[];
  rows: Row[];
  /** Ids of the spans on the critical path. */
  critical: string[];
}

export const callSpanId = (call: LmCallEvent): string => `call:${call.seq}`;
export const nodeSpanId = (nodeId: string): string => `node:${nodeId}`;

function callLabel(call: LmCallEvent): string {
  return `${call.role} · ${call.model}${call.attempt > 1 ? ` · attempt ${call.attempt}` : ""}`;
}

class Builder {
  readonly spans: Record<string, Span> = {};
  private readonly tree: TurnTree;
  private readonly origin: number;
  private readonly end: number;
  private readonly tsBySeq = new Map<number, number>();

  constructor(tree: TurnTree, origin: number) {
    this.tree = tree;
    this.origin = origin;
    this.end = (tree.endTs ?? origin) - origin;
    for (const e of tree.events) this.tsBySeq.set(e.seq, e.ts - origin);
  }

  private add(span: Omit<Span, "children">, children: Span[]): Span {
    // A parent covers what runs under it, even when its own events say less.
    const start = Math.min(span.start, ...children.map((c) => c.start));
    const end = Math.max(span.end, start, ...children.map((c) => c.end));
    const made: Span = { ...span, start, end, children: children.map((c) => c.id) };
    for (const c of children) this.spans[c.id] = { ...(this.spans[c.id] as Span), parent: made.id };
    this.spans[made.id] = made;
    return made;
  }

  call(call: LmCallEvent, nodeId: string, level: number): Span {
    const end = call.ts - this.origin;
    return this.add(
      { id: callSpanId(call), kind: "call", label: callLabel(call), start: end - call.latency_s, end, level, parent: null, nodeId, call, status: call.error ? "error" : "ok" },
      [],
    );
  }

  node(id: string, level: number): Span | null {
    const node = this.tree.nodes[id];
    if (!node) return null;
    const children: Span[] = [];
    const nested = new Set([...node.iterations.flatMap((c) => c.children), ...node.steps.flatMap((s) => s.children)]);
    const steps = node.steps.filter((s) => s.seq > 0);
    steps.forEach((s, i) => children.push(this.step(node, s, steps[i + 1], level + 1)));
    for (const cell of node.iterations) children.push(this.cell(node, cell, level + 1));
    const claimed = new Set(steps.map((s) => s.call?.seq));
    for (const c of node.calls) if (!claimed.has(c.seq)) children.push(this.call(c, node.id, level + 1));
    for (const child of node.children) {
      if (nested.has(child)) continue;
      const span = this.node(child, level + 1);
      if (span) children.push(span);
    }
    children.sort((a, b) => a.start - b.start);
    const running = node.status === "running" || node.status === "waiting";
    return this.add(
      {
        id: nodeSpanId(id),
        kind: "node",
        label: `${node.kind === "rlm" ? "RLM" : "Agent"} d${node.depth}${node.model ? ` · ${node.model}` : ""}`,
        start: node.startTs - this.origin,
        end: running ? this.end : node.endTs - this.origin,
        level,
        parent: null,
        nodeId: id,
        call: null,
        status: node.status,
      },
      children,
    );
  }

  private step(node: TreeNode, step: AgentStep, next: AgentStep | undefined, level: number): Span {
    const children: Span[] = [];
    if (step.call) children.push(this.call(step.call, node.id, level + 1));
    for (const id of step.children) {
      const span = this.node(id, level + 1);
      if (span) children.push(span);
    }
    const at = this.tsBySeq.get(step.seq) ?? node.startTs - this.origin;
    // A step lasts until the next one starts (its tool ran in between), the last one until
    // its node ends.
    const nextStart = next ? (next.call ? next.call.ts - this.origin - next.call.latency_s : this.tsBySeq.get(next.seq)) : undefined;
    const end = nextStart ?? (node.status === "running" ? this.end : node.endTs - this.origin);
    return this.add(
      { id: `step:${node.id}:${step.seq}`, kind: "step", label: `step · ${step.toolName}`, start: at, end: Math.max(at, end), level, parent: null, nodeId: node.id, call: null, status: step.result?.error ? "error" : null },
      children,
    );
  }

  private cell(node: TreeNode, cell: IterationCell, level: number): Span {
    const children: Span[] = cell.calls.map((c) => this.call(c, node.id, level + 1));
    const out = cell.output;
    if (out) {
      const end = out.ts - this.origin;
      const inner: Span[] = cell.subCalls.map((c) => this.call(c, node.id, level + 2));
      for (const id of cell.children) {
        const span = this.node(id, level + 2);
        if (span) inner.push(span);
      }
      inner.sort((a, b) => a.start - b.start);
      children.push(
        this.add(
          { id: `code:${node.id}:${cell.iteration}`, kind: "code", label: `code · ${out.duration_s.toFixed(1)} s${out.error_type ? ` · ${out.error_type}` : ""}`, start: end - out.duration_s, end, level: level + 1, parent: null, nodeId: node.id, call: null, status: out.error_type ? "error" : "ok" },
          inner,
        ),
      );
    } else {
      // The cell's code is still running (or never ran): what it made so far sits in the cell.
      for (const c of cell.subCalls) children.push(this.call(c, node.id, level + 1));
      for (const id of cell.children) {
        const span = this.node(id, level + 1);
        if (span) children.push(span);
      }
    }
    children.sort((a, b) => a.start - b.start);
    const first = children[0];
    const start = first ? first.start : node.startTs - this.origin;
    return this.add(
      { id: `iter:${node.id}:${cell.iteration}`, kind: "iteration", label: `iteration ${cell.iteration}${cell.phase === "extract" ? " · extract" : ""}`, start, end: out ? start : this.end, level, parent: null, nodeId: node.id, call: null, status: null },
      children,
    );
  }
}

/** The timeline of a turn's tree; an empty one for a tree without events. */
export function buildTimeline(tree: TurnTree): Timeline {
  const origin = tree.startTs ?? 0;
  const b = new Builder(tree, origin);
  const roots = tree.roots.map((id) => b.node(id, 0)).filter((s): s is Span => s !== null);
  const duration = Math.max((tree.endTs ?? origin) - origin, ...roots.map((r) => r.end), 0);
  const rows: Row[] = [];
  const place = (span: Span) => {
    rows.push({ level: span.level, spans: [span] });
    const kids = span.children.map((id) => b.spans[id] as Span);
    // Calls that are leaves share rows (lanes) where they do not overlap: a batch of
    // concurrent sub-calls stands side by side, one after another on one row.
    const leaves = kids.filter((k) => k.kind === "call");
    const lanes = packLanes(leaves);
    let laneRowsPlaced = false;
    for (const k of kids) {
      if (k.kind === "call") {
        if (!laneRowsPlaced) {
          for (const lane of lanes) rows.push({ level: k.level, spans: lane });
          laneRowsPlaced = true;
        }
      } else place(k);
    }
  };
  roots.forEach(place);
  return { origin, duration, spans: b.spans, roots: roots.map((r) => r.id), rows, critical: criticalPath(b.spans, roots.map((r) => r.id)) };
}

/** Spans in lanes: each goes on the first lane whose last span ended by its start (a span
 * that overlaps every lane opens a new one). Each lane is in time order. */
export function packLanes<T extends { start: number; end: number }>(spans: readonly T[]): T[][] {
  const lanes: T[][] = [];
  for (const s of [...spans].sort((a, b) => a.start - b.start || a.end - b.end)) {
    const lane = lanes.find((l) => (l.at(-1) as T).end <= s.start);
    if (lane) lane.push(s);
    else lanes.push([s]);
  }
  return lanes;
}

/** The spans the turn waited on: from the end of each span on the path, back through the child
 * that finished last by that point, then the one that finished last by the time that child
 * started, and so on (time in a span with no child running is the span's own; a child that
 * overlaps the next one on the path ran beside it). A child's end past its parent's counts as
 * the parent's end. */
/** Times are sums of floats: ends this close count as one instant. */
const EPSILON = 1e-6;

export function criticalPath(spans: Readonly<Record<string, Pick<Span, "id" | "start" | "end" | "children">>>, roots: readonly string[]): string[] {
  const path: string[] = [];
  const walk = (id: string, until: number) => {
    const span = spans[id];
    if (!span) return;
    path.push(id);
    let cursor = Math.min(span.end, until);
    const ends = (c: { end: number }) => Math.min(c.end, span.end);
    let rest = span.children.map((c) => spans[c]).filter((c) => c !== undefined);
    for (;;) {
      // A child still running at the cursor ran beside the one already on the path.
      const candidates = rest.filter((c) => ends(c) <= cursor + EPSILON && c.start < cursor);
      if (!candidates.length) break;
      const last = candidates.reduce((a, b) => (ends(b) > ends(a) ? b : a));
      walk(last.id, ends(last));
      cursor = last.start;
      rest = rest.filter((c) => c !== last);
    }
  };
  // Roots in a turn run one after another (an agent resumed after ask_user): the last one ends
  // the turn, the others before it.
  let cursor = Infinity;
  const ordered = roots.map((r) => spans[r]).filter((s) => s !== undefined).sort((a, b) => b.end - a.end);
  for (const r of ordered) {
    if (r.start >= cursor) continue;
    walk(r.id, cursor);
    cursor = r.start;
  }
  return path;
}
