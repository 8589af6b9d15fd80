import { describe, expect, it } from "vitest";

import type { FleetEvent } from "../generated/events";
import { buildTree } from "../tree/reducer";
import { compareRows, modelsOf, treeShape } from "./compare";

type Body = Record<string, unknown> & { type: string };

function turn(id: string, model: string, subCalls: number, answer: string): FleetEvent[] {
  const limits = { max_calls: 50, max_tokens: 1000, max_usd: 1, max_wall_s: 60, max_depth: 2 };
  const usage = { calls: 2 + subCalls, prompt_tokens: 10, completion_tokens: 5, tokens: 15, usd: 0.01, usd_unknown_calls: 0, elapsed_s: 3, limits, by_model: {} };
  const lm = (role: string, iteration: number | null) => ({
    type: "lm_call", role, model, prompt_tokens: 1, completion_tokens: 1, cost_usd: 0.001, latency_s: 0.1, iteration,
    prompt_preview: "", response_preview: "", error: null, usage_estimated: false, attempt: 1, http_status: null,
    finish_reason: "stop", retry_in_s: null, counted: true, call_id: null,
  });
  const bodies: [string, string | null, number, Body][] = [
    ["a", null, 0, { type: "turn_started", question: "How many?" }],
    ["a", null, 0, lm("agent", null)],
    ["a", null, 0, { type: "agent_step", thought: "", tool_name: "rlm_query", tool_args: {} }],
    ["r", "a", 1, { type: "rlm_started", model, sub_model: model, signature: "", inputs: {}, max_iterations: 5, iteration: null, query: null }],
    ["r", "a", 1, lm("root", 1)],
    ["r", "a", 1, { type: "rlm_iteration", iteration: 1, reasoning: "", code: "x", phase: "action" }],
    ...Array.from({ length: subCalls }, (): [string, string, number, Body] => ["r", "a", 1, lm("sub", 1)]),
    ["r", "a", 1, { type: "code_output", iteration: 1, stdout: "", stderr: "", error_type: null, error_message: null, traceback: null, duration_s: 0.1, timed_out: false, state_lost: false }],
    ["r", "a", 1, { type: "rlm_finished", status: "ok", answer: { answer } }],
    ["a", null, 0, { type: "turn_finished", status: "ok", answer, usage }],
  ];
  return bodies.map(([node, parent, depth, body], i) => ({ turn_id: id, node_id: node, parent_id: parent, depth, seq: i + 1, ts: i, ...body }) as unknown as FleetEvent);
}

describe("compare", () => {
  const a = buildTree(turn("t1", "openai/root", 2, "3"));
  const b = buildTree(turn("t2", "openai/other", 0, "3"));

  it("draws a tree's shape as an outline", () => {
    expect(treeShape(a)).toBe("Agent d0 · ok · openai/root · 1 step (rlm_query)\n  RLM d1 · ok · openai/root · 1 iteration · 2 sub-calls");
    expect(modelsOf(b)).toEqual(["openai/other"]);
  });

  it("marks what differs between two turns and only that", () => {
    const rows = Object.fromEntries(compareRows(a, b).map((r) => [r.label, r]));
    expect(rows.question?.differs).toBe(false);
    expect(rows.answer?.differs).toBe(false);
    expect(rows.limits).toMatchObject({ differs: false, values: ["calls 50 · tokens 1.0k · cost $1.00 · time 1 m 0 s", expect.any(String)] });
    expect(rows.models).toMatchObject({ differs: true, values: ["openai/root", "openai/other"] });
    expect(rows.calls).toMatchObject({ differs: true, values: ["4", "2"] });
    expect(rows["tree shape"]?.differs).toBe(true);
  });
});
