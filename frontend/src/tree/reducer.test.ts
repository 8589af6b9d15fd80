import { describe, expect, it } from "vitest";

import type { FleetEvent, Usage } from "../generated/events";
import { turnStatus } from "../session/trees";
import {
  applyEvent,
  applyEvents,
  budgetView,
  buildTree,
  replayStops,
  subtreeTotals,
  type TurnTree,
} from "./reducer";

const TURN = "turn1";
const AGENT = "agent0";
const AGENT2 = "agent1";
const RLM = "rlm1";
const CHILD = "rlm2";

const limits = { max_calls: 200, max_tokens: 2_000_000, max_usd: 5, max_wall_s: 1800, max_depth: 2 };

function usage(calls: number, tokens: number, usd = 0): Usage {
  return {
    calls,
    prompt_tokens: tokens,
    completion_tokens: 0,
    tokens,
    usd,
    usd_unknown_calls: 0,
    elapsed_s: calls,
    limits,
    by_model: {},
  };
}

type Where = { node: string; parent: string | null; depth: number };
const agent: Where = { node: AGENT, parent: null, depth: 0 };
const agent2: Where = { node: AGENT2, parent: null, depth: 0 };
const rlm: Where = { node: RLM, parent: AGENT2, depth: 1 };
const child: Where = { node: CHILD, parent: RLM, depth: 2 };

type Body = { type: FleetEvent["type"] } & Record<string, unknown>;

function lm(role: string, iteration: number | null, tokens: number, cost: number | null = 0.001) {
  return {
    type: "lm_call",
    role,
    model: role === "sub" ? "openai/sub" : "openai/root",
    prompt_tokens: tokens,
    completion_tokens: 10,
    cost_usd: cost,
    latency_s: 0.5,
    iteration,
    prompt_preview: `prompt ${role} ${iteration}`,
    response_preview: `response ${role} ${iteration}`,
    error: null,
  } as const;
}

/** A turn shaped like a real one: ask_user pause, resume on a new agent node, a delegated RLM
 * whose second cell calls llm_query twice and starts a child RLM, then the streamed answer. */
function script(): FleetEvent[] {
  const bodies: [Where, Body][] = [
    [agent, { type: "turn_started", question: "How many needles?", programs: {} }],
    [agent, lm("agent", 1, 100)],
    [agent, { type: "agent_step", thought: "ask", tool_name: "ask_user", tool_args: { question: "Which?" } }],
    [agent, { type: "ask_user", question: "Which document?", request_id: "r1", state: {} }],
    [agent, { type: "turn_finished", status: "waiting", answer: null, usage: usage(1, 110) }],
    [agent2, { type: "tool_result", tool_name: "ask_user", output: "big.txt", error: false }],
    [agent2, lm("agent", 2, 120)],
    [agent2, { type: "agent_step", thought: "delegate", tool_name: "rlm_query", tool_args: { question: "count" } }],
    [rlm, {
      type: "rlm_started", model: "openai/root", sub_model: "openai/sub", signature: "context, question -> answer",
      inputs: { context: { type: "str", chars: 5500 } }, max_iterations: 20,
    }],
    [rlm, lm("root", 1, 200)],
    [rlm, { type: "rlm_iteration", iteration: 1, reasoning: "look", code: "print(len(context))", phase: "action" }],
    [rlm, { type: "code_output", iteration: 1, stdout: "5500\n", stderr: "", error_type: null, error_message: null, traceback: null, duration_s: 0.01, timed_out: false, state_lost: false }],
    [rlm, lm("root", 2, 300)],
    [rlm, { type: "rlm_iteration", iteration: 2, reasoning: "split", code: "llm_query(a); llm_query(b); rlm_query(c)", phase: "action" }],
    [rlm, lm("sub", 2, 50, null)],
    [rlm, lm("sub", 2, 60, null)],
    [child, {
      type: "rlm_started", model: "openai/root", sub_model: "openai/sub", signature: "context -> answer",
      inputs: { context: { type: "str", chars: 100 } }, max_iterations: 20,
    }],
    [child, lm("root", 1, 40)],
    [child, { type: "rlm_iteration", iteration: 1, reasoning: "r", code: "SUBMIT(answer='3')", phase: "action" }],
    [child, { type: "code_output", iteration: 1, stdout: "", stderr: "", error_type: null, error_message: null, traceback: null, duration_s: 0.01, timed_out: false, state_lost: false }],
    [child, { type: "rlm_finished", status: "ok", answer: { answer: "3" }, iterations: 1, usage: usage(7, 1000) }],
    [rlm, { type: "code_output", iteration: 2, stdout: "ok\n", stderr: "", error_type: null, error_message: null, traceback: null, duration_s: 1.5, timed_out: false, state_lost: false }],
    [rlm, { type: "budget", usage: usage(8, 1200, 0.004), remaining: { calls: 192, tokens: 1_998_800, usd: 4.996, wall_s: 1790, depth: 1 } }],
    [rlm, { type: "rlm_finished", status: "ok", answer: { answer: "500" }, iterations: 2, usage: usage(8, 1200) }],
    [agent2, { type: "tool_result", tool_name: "rlm_query", output: "500", error: false }],
    [agent2, lm("agent", 3, 150)],
    [agent2, { type: "agent_step", thought: "done", tool_name: "finish", tool_args: {} }],
    [agent2, { type: "tool_result", tool_name: "finish", output: "", error: false }],
    [agent2, { type: "answer_delta", text: "500 " }],
    [agent2, { type: "answer_delta", text: "needles." }],
    [agent2, { type: "turn_finished", status: "ok", answer: "500 needles.", usage: usage(10, 1500, 0.005) }],
  ];
  return bodies.map(([w, body], i) => ({
    turn_id: TURN,
    node_id: w.node,
    parent_id: w.parent,
    depth: w.depth,
    seq: i + 1,
    ts: 1000 + i,
    ...body,
  }) as FleetEvent);
}

/** What a person sees of a tree: everything but the raw event log. */
function shape(tree: TurnTree) {
  const { events: _events, ...rest } = tree;
  return rest;
}

function shuffle<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

describe("building the tree", () => {
  const events = script();
  const tree = buildTree(events);

  it("nests the delegated RLM under the agent step that called it", () => {
    expect(tree.roots).toEqual([AGENT, AGENT2]);
    const a2 = tree.nodes[AGENT2]!;
    expect(a2.kind).toBe("agent");
    expect(a2.children).toEqual([RLM]);
    expect(a2.steps.map((s) => s.toolName)).toEqual(["rlm_query", "finish"]);
    expect(a2.steps[0]!.children).toEqual([RLM]);
    expect(a2.steps[0]!.result).toEqual({ output: "500", error: false });
    expect(a2.steps[0]!.call?.prompt_tokens).toBe(120);
  });

  it("nests a child RLM under the code cell that was running when it started", () => {
    const r = tree.nodes[RLM]!;
    expect(r.kind).toBe("rlm");
    expect(r.depth).toBe(1);
    expect(r.model).toBe("openai/root");
    expect(r.maxIterations).toBe(20);
    expect(r.children).toEqual([CHILD]);
    expect(r.iterations.map((c) => c.children)).toEqual([[], [CHILD]]);
    const c = tree.nodes[CHILD]!;
    expect(c.parentId).toBe(RLM);
    expect(c.depth).toBe(2);
    expect(c.status).toBe("ok");
    expect(c.answer).toEqual({ answer: "3" });
  });

  it("nests a child under the cell its rlm_started names, whatever cell is open", () => {
    const events = script().map((e) =>
      e.type === "rlm_started" && e.node_id === CHILD ? { ...e, iteration: 1 } : e,
    );
    const r = buildTree(events).nodes[RLM]!;
    expect(r.iterations.map((c) => c.children)).toEqual([[CHILD], []]);
  });

  it("puts sub calls under the iteration that made them and root calls on their cell", () => {
    const [one, two] = tree.nodes[RLM]!.iterations;
    expect(one!.subCalls).toHaveLength(0);
    expect(two!.subCalls.map((c) => c.prompt_tokens)).toEqual([50, 60]);
    expect(two!.calls.map((c) => c.role)).toEqual(["root"]);
    expect(two!.code).toContain("llm_query");
    expect(two!.output?.stdout).toBe("ok\n");
    expect(two!.seen).toBe(true);
  });

  it("answers the ask_user step on the resumed node and marks the paused node done", () => {
    const a = tree.nodes[AGENT]!;
    expect(a.steps[0]!.toolName).toBe("ask_user");
    expect(a.steps[0]!.result).toEqual({ output: "big.txt", error: false });
    expect(a.status).toBe("ok");
    expect(tree.askUser).toBeNull();
  });

  it("counts tokens, cost and calls per node, per subtree and in total", () => {
    expect(tree.nodes[RLM]!.own.calls).toBe(4);
    const sub = subtreeTotals(tree, RLM);
    expect(sub.calls).toBe(5);
    expect(sub.promptTokens).toBe(200 + 300 + 50 + 60 + 40);
    expect(sub.usdUnknown).toBe(2);
    expect(sub.usd).toBeCloseTo(0.003);
    expect(tree.totals.calls).toBe(8);
    expect(tree.totals.latency).toBeCloseTo(4);
    const b = budgetView(tree);
    expect(b.calls).toBe(10);
    expect(b.maxCalls).toBe(200);
    expect(b.maxUsd).toBe(5);
    expect(b.usd).toBeCloseTo(0.008);
  });

  it("streams the answer and ends with the turn's status", () => {
    expect(tree.answer).toBe("500 needles.");
    expect(tree.status).toBe("ok");
    expect(tree.question).toBe("How many needles?");
    expect(Object.values(tree.nodes).every((n) => n.status === "ok")).toBe(true);
  });

  it("accumulates answer deltas before turn_finished", () => {
    const partial = buildTree(events.slice(0, 30));
    expect(partial.answer).toBe("500 needles.");
    expect(partial.status).toBe("running");
    expect(buildTree(events.slice(0, 29)).answer).toBe("500 ");
  });
});

describe("unreliable streams", () => {
  const events = script();
  const expected = shape(buildTree(events));

  it("ignores duplicates and returns the same tree object", () => {
    const tree = buildTree(events);
    expect(applyEvent(tree, events[5]!)).toBe(tree);
    const doubled = buildTree(events.flatMap((e) => [e, e]));
    expect(shape(doubled)).toEqual(expected);
    expect(doubled.events).toHaveLength(events.length);
  });

  it("builds the same tree from events in any order", () => {
    for (const seed of [1, 2, 3, 42, 1234]) {
      const tree = buildTree(shuffle(events, seed));
      expect(shape(tree)).toEqual(expected);
      expect(tree.events.map((e) => e.seq)).toEqual(events.map((e) => e.seq));
    }
  });

  it("applies a late event into place", () => {
    const withoutSub = events.filter((e) => e.seq !== 15);
    const partial = buildTree(withoutSub);
    expect(partial.nodes[RLM]!.iterations[1]!.subCalls).toHaveLength(1);
    const whole = applyEvent(partial, events[14]!);
    expect(shape(whole)).toEqual(expected);
  });

  it("resumes from the last seq with an overlapping replay", () => {
    // The socket dropped after seq 12; the resumed stream replays from seq 10.
    let tree = buildTree(events.slice(0, 12));
    expect(tree.nodes[RLM]!.status).toBe("running");
    expect(tree.lastSeq).toBe(12);
    tree = applyEvents(tree, events.slice(9));
    expect(shape(tree)).toEqual(expected);
  });

  it("resumes across an ask_user pause", () => {
    let tree = buildTree(events.slice(0, 5));
    expect(tree.status).toBe("waiting");
    expect(tree.askUser?.question).toBe("Which document?");
    expect(tree.nodes[AGENT]!.status).toBe("waiting");
    tree = applyEvents(tree, events.slice(5, 6));
    expect(tree.status).toBe("running");
    expect(tree.askUser).toBeNull();
    tree = applyEvents(tree, events.slice(4));
    expect(shape(tree)).toEqual(expected);
  });

  it("ignores another turn's events", () => {
    const tree = buildTree(events.slice(0, 3));
    const stray = { ...events[3]!, turn_id: "other", seq: 99 } as FleetEvent;
    expect(applyEvent(tree, stray)).toBe(tree);
  });

  it("tolerates a node whose start was never seen", () => {
    const tree = buildTree(events.filter((e) => e.seq !== 9));
    expect(tree.nodes[RLM]!.kind).toBe("rlm");
    expect(tree.nodes[RLM]!.iterations).toHaveLength(2);
    expect(tree.nodes[CHILD]!.parentId).toBe(RLM);
  });
});

describe("ending early", () => {
  const events = script();

  it("marks every running node cancelled and keeps the partial answer", () => {
    const head = events.slice(0, 16);
    const base = { turn_id: TURN, ts: 2000 };
    const tree = buildTree([
      ...head,
      { ...base, node_id: AGENT2, parent_id: null, depth: 0, seq: 17, type: "cancelled", partial_answer: { answer: "half" }, reason: "cancelled by the user" },
      { ...base, node_id: AGENT2, parent_id: null, depth: 0, seq: 18, type: "turn_finished", status: "cancelled", answer: null, usage: usage(6, 800) },
    ]);
    expect(tree.status).toBe("cancelled");
    expect(tree.cancelled?.partial_answer).toEqual({ answer: "half" });
    expect(tree.nodes[RLM]!.status).toBe("cancelled");
    expect(tree.nodes[AGENT2]!.status).toBe("cancelled");
    expect(tree.nodes[AGENT]!.status).toBe("ok");
  });

  it("records errors on their node", () => {
    const tree = buildTree([
      ...events.slice(0, 12),
      { turn_id: TURN, node_id: RLM, parent_id: AGENT2, depth: 1, seq: 13, ts: 3000, type: "error", error_type: "SandboxError", message: "sandbox died", detail: null },
    ]);
    expect(tree.errors.map((e) => e.message)).toEqual(["sandbox died"]);
    expect(tree.nodes[RLM]!.errors).toHaveLength(1);
  });
});

describe("replay", () => {
  const events = script();

  it("stops at every event but answer fragments", () => {
    const stops = replayStops(events);
    expect(stops).toHaveLength(events.length - 2);
    expect(stops).not.toContain(29);
  });

  it("rebuilds the tree as it was at a stop", () => {
    const at = buildTree(events.filter((e) => e.seq <= 17));
    expect(Object.keys(at.nodes).sort()).toEqual([AGENT, AGENT2, CHILD, RLM].sort());
    expect(at.nodes[CHILD]!.iterations).toHaveLength(0);
  });

  it("names its turn and ignores events it already has", () => {
    const tree = buildTree(events, TURN);
    expect(tree.turnId).toBe(TURN);
    expect(applyEvents(tree, events.slice(3, 9))).toBe(tree);
  });
});

describe("budget meter", () => {
  it("shows the server's limits until the turn reports its own", () => {
    const early = buildTree(script().slice(0, 3));
    expect(budgetView(early).maxCalls).toBeNull();
    expect(budgetView(early, { max_calls: 50, max_usd: 1 }).maxCalls).toBe(50);
    expect(budgetView(early).calls).toBe(1);
    const late = buildTree(script());
    expect(budgetView(late, { max_calls: 50 }).maxCalls).toBe(200);
  });
});

describe("turn status", () => {
  it("prefers the events, unless the store settled the turn without one", () => {
    const waiting = buildTree(script().slice(0, 5));
    expect(turnStatus("waiting", waiting)).toBe("waiting");
    expect(turnStatus("cancelled", waiting)).toBe("cancelled");
    const running = buildTree(script().slice(0, 12));
    expect(turnStatus("running", running)).toBe("running");
    expect(turnStatus("interrupted", running)).toBe("interrupted");
    expect(turnStatus("ok", buildTree(script()))).toBe("ok");
    expect(turnStatus("running", undefined)).toBe("running");
    expect(turnStatus("ok", undefined)).toBe("ok");
    expect(turnStatus("budget", undefined)).toBe("budget"); // one word in the row and the events
  });
});
