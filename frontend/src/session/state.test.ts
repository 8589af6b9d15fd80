import { describe, expect, it } from "vitest";

import type { Turn } from "../api/client";
import { classify } from "../api/socket";
import type { FleetEvent } from "../generated/events";
import { initialSession, liveTurn, SessionStore, sessionReducer, turnsToResume, unsettled, type SessionState } from "./state";

const SESSION = "s1";

function turn(id: string, index: number, status: Turn["status"] = "ok"): Turn {
  return {
    id,
    session_id: SESSION,
    index,
    user_message: `q${index}`,
    text: `q${index}`,
    attachments: [],
    answer: status === "ok" ? "a" : null,
    status,
    error: null,
    usage: null,
    question: null,
    trace_id: null,
    programs: {},
    created_at: "2026-01-01T00:00:00Z",
    finished_at: null,
  };
}

function base(turnId: string, seq: number) {
  return { turn_id: turnId, node_id: "agent0", parent_id: null, depth: 0, seq, ts: 1_700_000_000 + seq };
}

const started = (turnId: string, question = "hello"): FleetEvent => ({ ...base(turnId, 1), type: "turn_started", question, programs: {} });
const finished = (turnId: string, seq = 2): FleetEvent => ({
  ...base(turnId, seq),
  type: "turn_finished",
  status: "ok",
  answer: "done",
  usage: { calls: 1, prompt_tokens: 1, completion_tokens: 1, tokens: 2, usd: 0, usd_unknown_calls: 0, by_model: {} },
} as unknown as FleetEvent);

function run(...actions: Parameters<typeof sessionReducer>[1][]): SessionState {
  return actions.reduce(sessionReducer, initialSession(SESSION));
}

describe("session reducer", () => {
  it("shows the page's own message, then its turn with the same text and attachments", () => {
    const attachments = [{ id: "d1", name: "big.txt" }];
    const sent = run({ type: "sent", message: { text: "sum it", attachments } });
    expect(sent.pending).toEqual({ text: "sum it", attachments });
    const live = sessionReducer(sent, { type: "events", events: [started("t1", "sum it\n\n(Attached documents: big.txt)")], live: true });
    expect(live.pending).toBeNull();
    expect(live.turns.map((t) => [t.id, t.text, t.attachments, t.status])).toEqual([["t1", "sum it", attachments, "running"]]);
    expect(live.loaded.has("t1")).toBe(true);
    expect(liveTurn(live)).toBe("t1");
  });

  it("keeps a live turn the server does not list yet, and drops it once listed", () => {
    const listedFirst = run({ type: "turns", turns: [turn("t1", 1)] }, { type: "events", events: [started("t2")], live: true });
    expect(listedFirst.turns.map((t) => t.id)).toEqual(["t1", "t2"]);
    const refreshed = sessionReducer(listedFirst, { type: "turns", turns: [turn("t1", 1)] });
    expect(refreshed.turns.map((t) => t.id)).toEqual(["t1", "t2"]);
    const both = sessionReducer(refreshed, { type: "turns", turns: [turn("t1", 1), turn("t2", 2)] });
    expect(both.turns.map((t) => [t.id, t.status])).toEqual([["t1", "ok"], ["t2", "ok"]]);
  });

  it("gives a refused message back, and a stored history no placeholder", () => {
    const refused = run(
      { type: "sent", message: { text: "again", attachments: [] } },
      { type: "refused", notice: { code: "busy", message: "a turn is in flight" } },
    );
    expect(refused.pending).toBeNull();
    expect(refused.returned).toEqual({ text: "again", attachments: [] });
    expect(refused.notice?.code).toBe("busy");
    const history = sessionReducer(refused, { type: "events", events: [started("t9")], live: false });
    expect(history.turns).toEqual([]);
    expect(history.trees.t9?.question).toBe("hello");
  });

  it("knows which turns to resume and which the store has not settled", () => {
    const state = run(
      { type: "turns", turns: [turn("t1", 1), turn("t2", 2, "running"), turn("t3", 3, "running")] },
      { type: "events", events: [started("t3"), finished("t3")], live: false },
    );
    expect(turnsToResume(state, "t4").sort()).toEqual(["t2", "t3", "t4"]);
    expect(unsettled(state)).toBe(true);
    expect(liveTurn(state)).toBe("t2");
    const answered = sessionReducer(run({ type: "turns", turns: [turn("t5", 1, "waiting")] }), { type: "answered", turnId: "t5" });
    expect(answered.turns[0]?.status).toBe("running");
  });

  it("loads a turn's events once, and again after a failure", () => {
    const asked = run({ type: "load", turnId: "t1" });
    expect(asked.loaded.has("t1")).toBe(true);
    const failed = sessionReducer(asked, { type: "load_failed", turnId: "t1", notice: { code: "load_failed", message: "x" } });
    expect(failed.loaded.has("t1")).toBe(false);
  });

  it("starts over for another session, and tells subscribers only of changes", () => {
    const store = new SessionStore(run({ type: "turns", turns: [turn("t1", 1)] }));
    let calls = 0;
    store.subscribe(() => (calls += 1));
    store.dispatch({ type: "events", events: [], live: true });
    expect(calls).toBe(0);
    store.dispatch({ type: "open", sessionId: "s2" });
    expect(calls).toBe(1);
    expect(store.getState()).toEqual(initialSession("s2"));
  });
});

describe("server frames", () => {
  it("tells an error event from a socket_error frame by its type", () => {
    const event = classify({ ...base("t1", 3), type: "error", error_type: "X", message: "boom" });
    const control = classify({ type: "socket_error", code: "busy", message: "busy" });
    expect(event?.type).toBe("error");
    expect(control?.type).toBe("socket_error");
    expect(classify({ type: "session", session_id: SESSION, active_turn: null })?.type).toBe("session");
    expect(classify({ type: "something_new" })).toBeNull();
    expect(classify(["not", "a", "frame"])).toBeNull();
  });
});
