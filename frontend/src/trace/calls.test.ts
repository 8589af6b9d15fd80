import { describe, expect, it } from "vitest";

import type { LmCallDetail } from "../api/client";
import type { LmCallEvent } from "../generated/events";
import { buildTree } from "../tree/reducer";
import { attemptsOf, callFacts, fold, missingPrompt, transcript } from "./calls";

const event = (over: Partial<LmCallEvent> = {}): LmCallEvent => ({
  turn_id: "t", node_id: "n", parent_id: null, depth: 1, seq: 5, ts: 10, type: "lm_call", role: "root",
  model: "openai/root", prompt_tokens: 100, completion_tokens: 20, cost_usd: 0.002, latency_s: 1.25,
  iteration: 1, prompt_preview: "p", response_preview: "r", error: null, usage_estimated: false, attempt: 3,
  http_status: null, finish_reason: "stop", retry_in_s: null, counted: true, call_id: "c1", capture_missing: null, ...over,
});

const detail = (over: Partial<LmCallDetail> = {}): LmCallDetail => ({
  call_id: "c1", turn_id: "t", node_id: "n", role: "root", model: "openai/root", params: { temperature: 0 },
  messages: [{ role: "system", content: "S" }, { role: "user", content: "U" }], reply: "R", prompt_tokens: 101,
  completion_tokens: 21, cost_usd: 0.003, latency_s: 1.5, finish_reason: "length", attempt: 3, error: null,
  captured: true, missing_reason: null, ts: 10, usage_estimated: false, ...over,
});

describe("the call inspector's pieces", () => {
  it("folds a long text to its head and counts what it hides", () => {
    expect(fold("short")).toEqual({ head: "short", hidden: 0 });
    const long = "x".repeat(5000);
    expect(fold(long)).toEqual({ head: "x".repeat(600), hidden: 4400 });
  });

  it("prefers the stored record's numbers and counts the retries before this attempt", () => {
    const facts = Object.fromEntries(callFacts(event(), detail()));
    expect(facts).toMatchObject({ "prompt tokens": "101", "finish reason": "length", "retries before": "2", latency: "1.50 s", cost: "$0.003000" });
    const fromEvent = Object.fromEntries(callFacts(event({ cost_usd: null, http_status: 429, retry_in_s: 2 }), null));
    expect(fromEvent).toMatchObject({ "prompt tokens": "100", cost: "unknown (no price for the model)", "HTTP status": "429", "retried in": "2.0 s" });
  });

  it("says why a prompt is missing", () => {
    expect(missingPrompt(event(), detail(), null)).toBeNull();
    expect(missingPrompt(event(), detail({ captured: false, missing_reason: "blob store full" }), null)).toBe("blob store full");
    expect(missingPrompt(event({ call_id: null }), null, null)).toMatch(/prompt capture is off/);
    expect(missingPrompt(event(), null, "the server has no record of this call")).toBe("the server has no record of this call");
  });

  it("copies the request and reply as one text", () => {
    expect(transcript(detail())).toBe("[system]\nS\n\n[user]\nU\n\n[reply]\nR");
  });
});

describe("attemptsOf", () => {
  it("finds the attempts of one call, and no other call's", () => {
    const calls = [
      event({ seq: 1, attempt: 1, http_status: 429 }),
      event({ seq: 2, attempt: 2 }),
      event({ seq: 3, attempt: 1, iteration: 2 }),
      event({ seq: 4, attempt: 1, iteration: 1 }),
      event({ seq: 5, attempt: 1, iteration: 1, role: "sub" }),
      event({ seq: 6, attempt: 2, iteration: 1 }),
      event({ seq: 7, attempt: 3, iteration: 1 }),
    ];
    const tree = buildTree(calls);
    const seqs = (c: LmCallEvent) => attemptsOf(tree, c).map((x) => x.seq);
    expect(seqs(calls[1] as LmCallEvent)).toEqual([1, 2]);
    expect(seqs(calls[0] as LmCallEvent)).toEqual([1, 2]);
    expect(seqs(calls[2] as LmCallEvent)).toEqual([3]);
    expect(seqs(calls[5] as LmCallEvent)).toEqual([4, 6, 7]);
    expect(seqs(calls[4] as LmCallEvent)).toEqual([5]);
  });
});
