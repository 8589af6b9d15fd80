import { describe, expect, it } from "vitest";

import type { FleetEvent } from "../generated/events";
import { buildTree, callKey, findCall } from "./reducer";
import { buildTimeline, criticalPath, packLanes, type Span } from "./timeline";

type Where = { node: string; parent: string | null; depth: number };
const agent: Where = { node: "agent", parent: null, depth: 0 };
const rlm: Where = { node: "rlm", parent: "agent", depth: 1 };
const child: Where = { node: "child", parent: "rlm", depth: 2 };

type Body = { type: FleetEvent["type"] } & Record<string, unknown>;

function lm(role: string, iteration: number | null, latency: number, model = role === "sub" ? "openai/sub" : "openai/root") {
  return {
    type: "lm_call", role, model, prompt_tokens: 10, completion_tokens: 5, cost_usd: 0.001, latency_s: latency, iteration,
    prompt_preview: "", response_preview: "", error: null, usage_estimated: false, attempt: 1, http_status: null,
    finish_reason: "stop", retry_in_s: null, counted: true, call_id: null,
  } as const;
}

const output = (iteration: number, duration: number) => ({
  type: "code_output", iteration, stdout: "", stderr: "", error_type: null, error_message: null, traceback: null,
  duration_s: duration, timed_out: false, state_lost: false,
}) as const;

const started = (iteration: number | null) => ({
  type: "rlm_started", model: "openai/root", sub_model: "openai/sub", signature: "context -> answer",
  inputs: {}, max_iterations: 20, iteration, query: null,
}) as const;

/** A delegated RLM whose first cell runs a batch of three sub-calls (two at once, one after),
 * then a child RLM; its second cell only counts. Times in seconds from 100. */
function events(): FleetEvent[] {
  const at: [number, Where, Body][] = [
    [0, agent, { type: "turn_started", question: "How many?" }],
    [1, agent, lm("agent", null, 1)],
    [1, agent, { type: "agent_step", thought: "", tool_name: "rlm_query", tool_args: {} }],
    [1.1, rlm, started(null)],
    [2.1, rlm, lm("root", 1, 1)],
    [2.1, rlm, { type: "rlm_iteration", iteration: 1, reasoning: "", code: "x", phase: "action" }],
    [3.2, rlm, lm("sub", 1, 1)], // 2.2 – 3.2
    [3.4, rlm, lm("sub", 1, 1.1)], // 2.3 – 3.4
    [4, rlm, lm("sub", 1, 0.5)], // 3.5 – 4.0
    [4.1, child, started(1)],
    [6, child, lm("root", 1, 1.8)],
    [6, child, { type: "rlm_iteration", iteration: 1, reasoning: "", code: "SUBMIT()", phase: "action" }],
    [6.2, child, output(1, 0.2)],
    [6.2, child, { type: "rlm_finished", status: "ok", answer: { answer: "1" } }],
    [6.3, rlm, output(1, 4.2)], // 2.1 – 6.3
    [7, rlm, lm("root", 2, 0.7)],
    [7, rlm, { type: "rlm_iteration", iteration: 2, reasoning: "", code: "SUBMIT()", phase: "action" }],
    [7.1, rlm, output(2, 0.1)],
    [7.1, rlm, { type: "rlm_finished", status: "ok", answer: { answer: "3" } }],
    [7.2, agent, { type: "tool_result", tool_name: "rlm_query", output: "3", error: false }],
    [8, agent, lm("agent", null, 0.8)],
    [8, agent, { type: "agent_step", thought: "", tool_name: "finish", tool_args: {} }],
    [8.5, agent, { type: "turn_finished", status: "ok", answer: "3", usage: null }],
  ];
  return at.map(([t, w, body], i) => ({
    turn_id: "t", node_id: w.node, parent_id: w.parent, depth: w.depth, seq: i + 1, ts: 100 + t, ...body,
  }) as unknown as FleetEvent);
}

const near = (n: number) => expect.closeTo(n, 6);

describe("the timeline of a turn", () => {
  const timeline = buildTimeline(buildTree(events()));
  const span = (id: string) => timeline.spans[id] as Span;

  it("puts every node, step, iteration, code cell and call on one axis from the turn's start", () => {
    expect(timeline.origin).toBe(100);
    expect(timeline.duration).toBeCloseTo(8.5);
    expect(span("node:agent")).toMatchObject({ start: 0, end: near(8.5), level: 0 });
    expect(span("node:rlm")).toMatchObject({ start: near(1.1), end: near(7.1), level: 2, parent: "step:agent:3" });
    expect(span("iter:rlm:1")).toMatchObject({ start: near(1.1), end: near(6.3) });
    expect(span("code:rlm:1")).toMatchObject({ start: near(2.1), end: near(6.3), parent: "iter:rlm:1" });
    expect(span("call:7")).toMatchObject({ kind: "call", start: near(2.2), end: near(3.2), parent: "code:rlm:1" });
    expect(span("node:child")).toMatchObject({ parent: "code:rlm:1", start: near(4.1), end: near(6.2) });
    const kinds = Object.values(timeline.spans).map((s) => s.kind);
    expect(kinds.filter((k) => k === "call")).toHaveLength(8);
    expect(kinds.filter((k) => k === "code")).toHaveLength(3);
  });

  it("lays concurrent sub-calls side by side and a later one after them on a shared row", () => {
    const subRows = timeline.rows.filter((r) => r.spans.some((s) => s.call?.role === "sub"));
    expect(subRows.map((r) => r.spans.map((s) => s.id))).toEqual([["call:7", "call:9"], ["call:8"]]);
    // Rows follow the tree: each node's row before the rows of what runs under it.
    const order = timeline.rows.map((r) => r.spans[0]?.id);
    expect(order.indexOf("node:rlm")).toBeLessThan(order.indexOf("iter:rlm:1"));
    expect(order.indexOf("code:rlm:1")).toBeLessThan(order.indexOf("node:child"));
    expect(order.indexOf("node:child")).toBeLessThan(order.indexOf("iter:rlm:2"));
  });

  it("marks the chain the turn waited on as its critical path", () => {
    const path = new Set(timeline.critical);
    for (const id of ["node:agent", "step:agent:3", "node:rlm", "iter:rlm:1", "code:rlm:1", "node:child", "call:11", "iter:rlm:2", "call:16", "call:21", "call:2"]) {
      expect(path, id).toContain(id);
    }
    // Of the two sub-calls at once, the one that finished last held the batch up; the third
    // ran after it, the child after the third.
    expect(path).toContain("call:8");
    expect(path).toContain("call:9");
    expect(path).not.toContain("call:7");
  });

  it("keeps a running turn's open spans up to its last event", () => {
    const partial = buildTimeline(buildTree(events().slice(0, 9)));
    expect(partial.duration).toBeCloseTo(4);
    expect((partial.spans["node:rlm"] as Span).end).toBeCloseTo(4);
    expect((partial.spans["iter:rlm:1"] as Span).end).toBeCloseTo(4);
  });

  it("is empty for a tree without events", () => {
    expect(buildTimeline(buildTree([]))).toMatchObject({ duration: 0, rows: [], critical: [] });
  });
});

describe("packLanes", () => {
  it("opens a lane only for a span that overlaps every lane", () => {
    const s = (start: number, end: number) => ({ start, end });
    expect(packLanes([s(0, 2), s(1, 3), s(2, 4), s(3, 5), s(0.5, 1)])).toEqual([
      [s(0, 2), s(2, 4)],
      [s(0.5, 1), s(1, 3), s(3, 5)],
    ]);
    expect(packLanes([s(0, 3), s(1, 3), s(2, 3)])).toHaveLength(3);
  });
});

describe("criticalPath", () => {
  const spans = (list: [string, number, number, string[]][]) =>
    Object.fromEntries(list.map(([id, start, end, children]) => [id, { id, start, end, children }]));

  it("follows the child that ended last, then the one before it started", () => {
    const tree = spans([
      ["root", 0, 10, ["a", "b", "c"]],
      ["a", 0, 4, []],
      ["b", 1, 3, []],
      ["c", 5, 10, ["c1", "c2"]],
      ["c1", 5, 9, []],
      ["c2", 5, 6, []],
    ]);
    expect(criticalPath(tree, ["root"]).sort()).toEqual(["a", "c", "c1", "root"]);
  });

  it("counts a child that outlived its parent up to the parent's end", () => {
    const tree = spans([
      ["root", 0, 5, ["late", "early"]],
      ["late", 3, 9, []],
      ["early", 0, 3, []],
    ]);
    expect(criticalPath(tree, ["root"]).sort()).toEqual(["early", "late", "root"]);
  });

  it("takes every root of a turn resumed after a question, in turn", () => {
    const tree = spans([
      ["first", 0, 2, []],
      ["second", 5, 9, []],
    ]);
    expect(criticalPath(tree, ["first", "second"]).sort()).toEqual(["first", "second"]);
  });
});

describe("a call's address in its tree", () => {
  it("is its call_id, or its seq for a call recorded without one", () => {
    const stream = events().map((e) => (e.type === "lm_call" && e.seq === 7 ? { ...e, call_id: "abc" } : e));
    const tree = buildTree(stream);
    const kept = findCall(tree, "abc");
    expect(kept?.seq).toBe(7);
    expect(callKey(kept!)).toBe("abc");
    const bare = findCall(tree, "seq:8");
    expect(bare?.seq).toBe(8);
    expect(callKey(bare!)).toBe("seq:8");
    expect(findCall(tree, "seq:1")).toBeUndefined(); // turn_started, not a call
  });
});
