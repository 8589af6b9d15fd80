import { describe, expect, it } from "vitest";

import { compareHref, parseRoute, sessionHref, stepHref, turnsHref, usageHref, type UsageScope } from "./route";

describe("routes", () => {
  it("reads a step's address back as the step, to the call", () => {
    const step = { turnId: "t 1", nodeId: "n/2", callId: "seq:7" };
    expect(parseRoute(stepHref("s1", step))).toEqual({ page: "workbench", sessionId: "s1", step });
    expect(parseRoute(stepHref("s1", { turnId: "t1" }))).toEqual({
      page: "workbench", sessionId: "s1", step: { turnId: "t1", nodeId: null, callId: null },
    });
    expect(stepHref("s1", { nodeId: "n" })).toBe(sessionHref("s1"));
    expect(parseRoute("#/")).toEqual({ page: "workbench", sessionId: null, step: { turnId: null, nodeId: null, callId: null } });
  });

  it("keeps the turns view's search in the address", () => {
    const filters = { q: "needle & hay", status: "error", min_cost: "0.5", sort: "cost_usd", order: "desc" };
    expect(turnsHref(filters)).toMatch(/^#\/turns\?/);
    expect(parseRoute(turnsHref(filters))).toEqual({ page: "turns", filters });
    expect(parseRoute("#/turns")).toEqual({ page: "turns", filters: {} });
  });

  it("names the two turns compared and the scope of usage", () => {
    expect(parseRoute(compareHref("a", "b/c"))).toEqual({ page: "compare", a: "a", b: "b/c" });
    const scopes: UsageScope[] = [
      { kind: "turn", turnId: "t1" },
      { kind: "session", sessionId: "s1" },
      { kind: "range", since: "2026-01-01", until: "" },
      { kind: "range", since: "", until: "" },
    ];
    for (const scope of scopes) expect(parseRoute(usageHref(scope))).toEqual({ page: "usage", scope });
  });
});
