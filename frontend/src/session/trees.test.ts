import { describe, expect, it } from "vitest";

import type { FleetEvent } from "../generated/events";
import { buildTree } from "../tree/reducer";
import { askedOf } from "./trees";

const base = { turn_id: "t1", node_id: "a", parent_id: null, depth: 0, ts: 1 };

describe("askedOf", () => {
  it("keeps each question with the reply it got, from the events", () => {
    const events = [
      { ...base, seq: 1, type: "turn_started", question: "How many?" },
      { ...base, seq: 2, type: "agent_step", thought: "which?", tool_name: "ask_user", tool_args: { question: "Which one?" } },
      { ...base, seq: 3, type: "ask_user", question: "Which one?", choices: ["a", "b"], request_id: "r", state: {} },
      { ...base, seq: 4, type: "turn_finished", status: "waiting", answer: null, usage: null },
      { ...base, seq: 5, type: "tool_result", tool_name: "ask_user", output: "a", error: false },
      { ...base, seq: 6, type: "agent_step", thought: "again", tool_name: "ask_user", tool_args: {} },
      { ...base, seq: 7, type: "ask_user", question: "Sure?", choices: null, request_id: "s", state: {} },
    ] as unknown as FleetEvent[];
    expect(askedOf({ asked: [] }, buildTree(events, "t1"))).toEqual([
      { question: "Which one?", reply: "a" },
      { question: "Sure?", reply: null },
    ]);
  });

  it("reads the server's list when the turn's events are not loaded", () => {
    expect(askedOf({ asked: [{ question: "Which?", reply: "b" }] }, undefined)).toEqual([{ question: "Which?", reply: "b" }]);
  });
});
