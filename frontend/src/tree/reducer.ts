/* The execution tree of one turn, built from its events by a pure fold.

Events can arrive twice (a resumed stream overlaps what was seen) or out of order (the REST
backlog and the live socket race). The tree is always fold(events sorted by seq, unique):
an event past the last seq is applied incrementally; a duplicate returns the same tree; a
late event is inserted and the tree is rebuilt.

Its Python twin is fleet_rlm/tree.py (the terminal tree, the Markdown export and the MLflow trace
draw from it): the event streams in tests/data/event_trees/ must fold alike in both
(fixtures.test.ts here, tests/unit/test_tree.py there). */

import type {
  ArtifactEvent,
  AskUserEvent,
  CancelledEvent,
  CodeOutputEvent,
  ErrorEvent,
  FleetEvent,
  InputInfo,
  JsonValue,
  Limits,
  LmCallEvent,
  Remaining,
  Usage,
} from "../generated/events";

/** A turn's status (the TurnStatus of events, store and API), or an RLM node's `extract`. */
export type NodeStatus = "running" | "waiting" | "ok" | "extract" | "budget" | "cancelled" | "error" | "interrupted";
export type TurnState = "idle" | NodeStatus;

export interface CallTotals {
  calls: number;
  promptTokens: number;
  completionTokens: number;
  usd: number;
  usdUnknown: number;
  latency: number;
}

export interface IterationCell {
  iteration: number;
  phase: "action" | "extract";
  reasoning: string;
  code: string;
  /** false until the rlm_iteration event itself arrived (its lm_call comes first). */
  seen: boolean;
  output: CodeOutputEvent | null;
  /** The root/extract call that wrote this cell. */
  calls: LmCallEvent[];
  /** llm_query calls made by the cell's code. */
  subCalls: LmCallEvent[];
  /** Child RLMs started while the cell's code ran. */
  children: string[];
}

export interface AgentStep {
  thought: string;
  toolName: string;
  toolArgs: Record<string, JsonValue>;
  seq: number;
  call: LmCallEvent | null;
  result: { output: string; error: boolean } | null;
  children: string[];
  /** Files its code wrote under artifacts/. */
  artifacts: ArtifactEvent[];
}

export interface TreeNode {
  id: string;
  parentId: string | null;
  depth: number;
  kind: "agent" | "rlm";
  status: NodeStatus;
  startTs: number;
  endTs: number;
  model: string | null;
  subModel: string | null;
  signature: string | null;
  /** The query a child RLM was asked. */
  query: string | null;
  inputs: Record<string, InputInfo>;
  maxIterations: number | null;
  iterations: IterationCell[];
  steps: AgentStep[];
  /** Calls not written into an iteration cell (agent steps, summaries). */
  calls: LmCallEvent[];
  children: string[];
  own: CallTotals;
  answer: Record<string, JsonValue> | null;
  errors: ErrorEvent[];
  /** An agent lm_call waiting for the agent_step it produced. */
  unclaimedCall: LmCallEvent | null;
}

export interface TurnTree {
  turnId: string | null;
  events: FleetEvent[];
  lastSeq: number;
  nodes: Record<string, TreeNode>;
  roots: string[];
  status: TurnState;
  question: string;
  answer: string;
  askUser: AskUserEvent | null;
  usage: Usage | null;
  remaining: Remaining | null;
  totals: CallTotals;
  errors: ErrorEvent[];
  cancelled: CancelledEvent | null;
  startTs: number | null;
  endTs: number | null;
}

export const zeroTotals: CallTotals = {
  calls: 0,
  promptTokens: 0,
  completionTokens: 0,
  usd: 0,
  usdUnknown: 0,
  latency: 0,
};

export function emptyTree(turnId: string | null = null): TurnTree {
  return {
    turnId,
    events: [],
    lastSeq: 0,
    nodes: {},
    roots: [],
    status: "idle",
    question: "",
    answer: "",
    askUser: null,
    usage: null,
    remaining: null,
    totals: zeroTotals,
    errors: [],
    cancelled: null,
    startTs: null,
    endTs: null,
  };
}

/** The tree of `events` in any order, duplicates allowed. */
export function buildTree(events: readonly FleetEvent[], turnId: string | null = null): TurnTree {
  return applyEvents(emptyTree(turnId), events);
}

export function applyEvents(tree: TurnTree, events: readonly FleetEvent[]): TurnTree {
  return events.reduce(applyEvent, tree);
}

export function applyEvent(tree: TurnTree, event: FleetEvent): TurnTree {
  if (tree.turnId !== null && event.turn_id !== tree.turnId) return tree;
  if (event.seq > tree.lastSeq) return step(tree, event);
  if (indexOfSeq(tree.events, event.seq) >= 0) return tree;
  const events = [...tree.events];
  events.splice(insertionPoint(events, event.seq), 0, event);
  return events.reduce(step, emptyTree(tree.turnId ?? event.turn_id));
}

function indexOfSeq(events: readonly FleetEvent[], seq: number): number {
  const i = insertionPoint(events, seq);
  return events[i]?.seq === seq ? i : -1;
}

function insertionPoint(events: readonly FleetEvent[], seq: number): number {
  let lo = 0;
  let hi = events.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((events[mid] as FleetEvent).seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const RLM_EVENTS = new Set(["rlm_started", "rlm_iteration", "code_output", "rlm_finished"]);

function guessKind(event: FleetEvent): TreeNode["kind"] {
  if (RLM_EVENTS.has(event.type)) return "rlm";
  if (event.type === "lm_call" && event.role !== "agent" && event.role !== "summary") return "rlm";
  return "agent";
}

function newNode(event: FleetEvent): TreeNode {
  return {
    id: event.node_id,
    parentId: event.parent_id,
    depth: event.depth,
    kind: guessKind(event),
    status: "running",
    startTs: event.ts,
    endTs: event.ts,
    model: null,
    subModel: null,
    signature: null,
    query: null,
    inputs: {},
    maxIterations: null,
    iterations: [],
    steps: [],
    calls: [],
    children: [],
    own: zeroTotals,
    answer: null,
    errors: [],
    unclaimedCall: null,
  };
}

function addCall(totals: CallTotals, call: LmCallEvent): CallTotals {
  return {
    // An attempt that never reached the provider is shown, not counted (as the budget does).
    calls: totals.calls + (call.counted === false ? 0 : 1),
    promptTokens: totals.promptTokens + call.prompt_tokens,
    completionTokens: totals.completionTokens + call.completion_tokens,
    usd: totals.usd + (call.cost_usd ?? 0),
    usdUnknown: totals.usdUnknown + (call.cost_usd === null ? 1 : 0),
    latency: totals.latency + call.latency_s,
  };
}

export function sumTotals(a: CallTotals, b: CallTotals): CallTotals {
  return {
    calls: a.calls + b.calls,
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    usd: a.usd + b.usd,
    usdUnknown: a.usdUnknown + b.usdUnknown,
    latency: a.latency + b.latency,
  };
}

/** A node's own calls plus those of every node below it. */
export function subtreeTotals(tree: TurnTree, nodeId: string): CallTotals {
  const node = tree.nodes[nodeId];
  if (!node) return zeroTotals;
  return node.children.reduce((acc, id) => sumTotals(acc, subtreeTotals(tree, id)), node.own);
}

function blankCell(iteration: number): IterationCell {
  return {
    iteration,
    phase: "action",
    reasoning: "",
    code: "",
    seen: false,
    output: null,
    calls: [],
    subCalls: [],
    children: [],
  };
}

/** The node's cell for `iteration`, created when its events come before its rlm_iteration. */
function withCell(
  node: TreeNode,
  iteration: number,
  change: (cell: IterationCell) => IterationCell,
): TreeNode {
  const i = node.iterations.findIndex((c) => c.iteration === iteration);
  const iterations = [...node.iterations];
  if (i >= 0) iterations[i] = change(iterations[i] as IterationCell);
  else iterations.push(change(blankCell(iteration)));
  return { ...node, iterations };
}

const FINAL: ReadonlySet<NodeStatus> = new Set(["ok", "extract", "budget", "cancelled", "error", "interrupted"]);

function settle(
  nodes: Record<string, TreeNode>,
  from: NodeStatus,
  to: NodeStatus,
): Record<string, TreeNode> {
  const out: Record<string, TreeNode> = {};
  for (const [id, node] of Object.entries(nodes)) {
    out[id] = node.status === from ? { ...node, status: to } : node;
  }
  return out;
}

/** Apply one event whose seq is past every seq applied so far. */
function step(tree: TurnTree, event: FleetEvent): TurnTree {
  const t: TurnTree = {
    ...tree,
    turnId: tree.turnId ?? event.turn_id,
    events: [...tree.events, event],
    lastSeq: event.seq,
    startTs: tree.startTs ?? event.ts,
    endTs: event.ts,
  };
  // A turn that paused on ask_user goes on when anything further arrives.
  let nodes: Record<string, TreeNode> = { ...t.nodes };
  if (t.status === "waiting" || t.status === "idle") {
    if (t.status === "waiting") nodes = settle(nodes, "waiting", "ok");
    t.status = "running";
    t.askUser = null;
  }
  const known = nodes[event.node_id];
  let node: TreeNode = known ? { ...known, endTs: event.ts } : newNode(event);
  if (!known) {
    const parent = event.parent_id === null ? undefined : nodes[event.parent_id];
    const cell = event.type === "rlm_started" ? event.iteration : null;
    if (parent) nodes[parent.id] = spawnedIn(parent, node.id, cell);
    else t.roots = [...t.roots, node.id];
  }

  switch (event.type) {
    case "turn_started":
      t.question = event.question;
      break;
    case "agent_step":
      node.steps = [
        ...node.steps,
        {
          thought: event.thought,
          toolName: event.tool_name,
          toolArgs: event.tool_args,
          seq: event.seq,
          call: node.unclaimedCall,
          result: null,
          children: [],
          artifacts: [],
        },
      ];
      node.unclaimedCall = null;
      break;
    case "artifact": {
      // Written while the step's tool ran: the open step, else the node's last one.
      let at = node.steps.findLastIndex((st) => st.result === null);
      if (at < 0) at = node.steps.length - 1;
      if (at < 0) {
        node.steps = [{ thought: "", toolName: "python", toolArgs: {}, seq: event.seq, call: null, result: null, children: [], artifacts: [] }];
        at = 0;
      }
      const step = node.steps[at] as AgentStep;
      node.steps = node.steps.map((st, i) => (i === at ? { ...step, artifacts: [...step.artifacts, event] } : st));
      break;
    }
    case "tool_result": {
      // After an ask_user pause the result lands on the resumed agent node, not the asking one.
      nodes[node.id] = node;
      nodes = withToolResult(nodes, t.roots, node.id, event.tool_name, {
        output: event.output,
        error: event.error,
      });
      node = nodes[node.id] as TreeNode;
      break;
    }
    case "rlm_started":
      node.kind = "rlm";
      node.model = event.model;
      node.subModel = event.sub_model;
      node.signature = event.signature;
      node.query = event.query;
      node.inputs = event.inputs;
      node.maxIterations = event.max_iterations;
      break;
    case "rlm_iteration":
      node.kind = "rlm";
      node = withCell(node, event.iteration, (c) => ({
        ...c,
        phase: event.phase,
        reasoning: event.reasoning,
        code: event.code,
        seen: true,
      }));
      break;
    case "code_output":
      node = withCell(node, event.iteration, (c) => ({ ...c, output: event }));
      break;
    case "lm_call":
      node.own = addCall(node.own, event);
      t.totals = addCall(t.totals, event);
      if (node.model === null && event.role !== "sub") node.model = event.model;
      if (event.iteration !== null && (event.role === "root" || event.role === "extract")) {
        node = withCell(node, event.iteration, (c) => ({ ...c, calls: [...c.calls, event] }));
      } else if (event.iteration !== null && event.role === "sub") {
        node = withCell(node, event.iteration, (c) => ({ ...c, subCalls: [...c.subCalls, event] }));
      } else {
        node.calls = [...node.calls, event];
        if (event.role === "agent") node.unclaimedCall = event;
      }
      break;
    case "budget":
      t.usage = event.usage;
      t.remaining = event.remaining;
      break;
    case "rlm_finished":
      node.status = event.status;
      node.answer = event.answer;
      break;
    case "ask_user":
      t.askUser = event;
      break;
    case "answer_delta":
      t.answer += event.text;
      break;
    case "turn_finished":
      t.usage = event.usage;
      if (event.answer !== null) t.answer = event.answer;
      t.status = event.status;
      node.status = event.status;
      nodes[node.id] = node;
      if (FINAL.has(event.status)) nodes = settle(nodes, "running", event.status);
      node = nodes[node.id] as TreeNode;
      break;
    case "error":
      node.errors = [...node.errors, event];
      t.errors = [...t.errors, event];
      break;
    case "cancelled":
      t.cancelled = event;
      nodes[node.id] = node;
      nodes = settle(nodes, "running", "cancelled");
      node = nodes[node.id] as TreeNode;
      break;
  }
  nodes[node.id] = node;
  t.nodes = nodes;
  return t;
}

/** Record a child under its parent, and under the iteration cell that started it (the event
says which), else the cell (or agent step) that was running when it started. */
function spawnedIn(node: TreeNode, childId: string, cellIteration: number | null): TreeNode {
  const parent = { ...node, children: [...node.children, childId] };
  if (parent.kind === "rlm" && parent.iterations.length > 0) {
    let i = parent.iterations.findIndex((c) => c.iteration === cellIteration);
    if (i < 0) i = parent.iterations.findLastIndex((c) => c.output === null);
    if (i < 0) i = parent.iterations.length - 1;
    const iterations = [...parent.iterations];
    const cell = iterations[i] as IterationCell;
    iterations[i] = { ...cell, children: [...cell.children, childId] };
    return { ...parent, iterations };
  }
  if (parent.kind === "agent" && parent.steps.length > 0) {
    let i = parent.steps.findLastIndex((s) => s.result === null);
    if (i < 0) i = parent.steps.length - 1;
    const steps = [...parent.steps];
    const s = steps[i] as AgentStep;
    steps[i] = { ...s, children: [...s.children, childId] };
    return { ...parent, steps };
  }
  return parent;
}

function withToolResult(
  nodes: Record<string, TreeNode>,
  roots: readonly string[],
  nodeId: string,
  toolName: string,
  result: { output: string; error: boolean },
): Record<string, TreeNode> {
  const order = [nodeId, ...[...roots].reverse().filter((id) => id !== nodeId)];
  for (const id of order) {
    const n = nodes[id];
    if (!n) continue;
    const i = n.steps.findLastIndex((s) => s.result === null && s.toolName === toolName);
    if (i < 0) continue;
    const steps = [...n.steps];
    steps[i] = { ...(steps[i] as AgentStep), result };
    return { ...nodes, [id]: { ...n, steps } };
  }
  const n = nodes[nodeId] as TreeNode;
  const orphan: AgentStep = {
    thought: "",
    toolName,
    toolArgs: {},
    seq: 0,
    call: null,
    result,
    children: [],
    artifacts: [],
  };
  return { ...nodes, [nodeId]: { ...n, steps: [...n.steps, orphan] } };
}

/** What the budget meter shows: spent against limits, the larger of reported and counted. */
export interface BudgetView {
  calls: number;
  tokens: number;
  usd: number;
  /** Calls of models without a known price: their cost is not in `usd`. */
  usdUnknown: number;
  elapsed: number;
  maxCalls: number | null;
  maxTokens: number | null;
  maxUsd: number | null;
  maxWall: number | null;
}

/** `defaults`: the limits to show before the turn reports its own (the server's settings). */
export function budgetView(tree: TurnTree, defaults: Partial<Limits> = {}): BudgetView {
  const u = tree.usage;
  const counted = tree.totals;
  const elapsed = tree.startTs !== null && tree.endTs !== null ? tree.endTs - tree.startTs : 0;
  return {
    calls: Math.max(u?.calls ?? 0, counted.calls),
    tokens: Math.max(u?.tokens ?? 0, counted.promptTokens + counted.completionTokens),
    usd: Math.max(u?.usd ?? 0, counted.usd),
    usdUnknown: Math.max(u?.usd_unknown_calls ?? 0, counted.usdUnknown),
    elapsed: Math.max(u?.elapsed_s ?? 0, elapsed),
    maxCalls: (u ? u.limits.max_calls : defaults.max_calls) ?? null,
    maxTokens: (u ? u.limits.max_tokens : defaults.max_tokens) ?? null,
    maxUsd: (u ? u.limits.max_usd : defaults.max_usd) ?? null,
    maxWall: (u ? u.limits.max_wall_s : defaults.max_wall_s) ?? null,
  };
}

/** Seqs of the events a replay stops at: every event but streamed answer fragments. */
export function replayStops(events: readonly FleetEvent[]): number[] {
  return events.filter((e) => e.type !== "answer_delta").map((e) => e.seq);
}

/** Where a call of the tree is found again: its call_id, or `seq:N` for one recorded without. */
export function callKey(call: LmCallEvent): string {
  return call.call_id ?? `seq:${call.seq}`;
}

export function findCall(tree: TurnTree, key: string): LmCallEvent | undefined {
  for (const e of tree.events) if (e.type === "lm_call" && callKey(e) === key) return e;
  return undefined;
}

/** Every file the turn's code wrote, in the order written (latest write of a path last). */
export function turnArtifacts(tree: TurnTree): ArtifactEvent[] {
  return Object.values(tree.nodes)
    .flatMap((n) => n.steps.flatMap((st) => st.artifacts))
    .sort((a, b) => a.seq - b.seq);
}
