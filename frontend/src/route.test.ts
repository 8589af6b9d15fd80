import { describe, expect, it } from "vitest";

import { parseRoute, turnHref } from "./route";

describe("routes", () => {
  it("reads a session and a turn from the address, and writes a turn's", () => {
    expect(parseRoute("#/s/abc")).toEqual({ page: "workbench", sessionId: "abc" });
    expect(parseRoute("#/s/abc/t/t1")).toEqual({ page: "workbench", sessionId: "abc", turnId: "t1" });
    expect(parseRoute(turnHref("a b", "t/2"))).toEqual({ page: "workbench", sessionId: "a b", turnId: "t/2" });
    expect(parseRoute("#/usage")).toEqual({ page: "usage" });
  });
});
