import { describe, expect, it } from "vitest";

import { limitsSummary, toLimits } from "./limits";

describe("toLimits", () => {
  it("sends only the fields filled in, as numbers", () => {
    expect(toLimits({ max_calls: "1", max_usd: " 0.5 ", max_depth: "", max_iterations: undefined })).toEqual({
      max_calls: 1,
      max_usd: 0.5,
    });
    expect(toLimits({})).toEqual({});
  });

  it("keeps zero and text the browser cannot read, for the server to judge", () => {
    expect(toLimits({ max_depth: "0", max_calls: "many" })).toEqual({ max_depth: 0, max_calls: "many" });
  });
});

describe("limitsSummary", () => {
  it("says what is set, in a fixed order", () => {
    expect(limitsSummary({ max_iterations: 5, max_calls: 1 })).toBe("1 call · 5 it");
    expect(limitsSummary({ max_calls: 3, max_usd: 0.25, max_depth: 0 })).toBe("3 calls · $0.25 · depth 0");
    expect(limitsSummary({})).toBe("");
    // tokens and wall time, as `fleet run --max-tokens --max-wall-s` take them
    expect(limitsSummary({ max_wall_s: 60, max_tokens: 20000 })).toBe("20,000 tokens · 60 s");
  });
});
