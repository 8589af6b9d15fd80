import { describe, expect, it } from "vitest";

import { programsText } from "../chat/Chat";
import { diffLines, versionLabel } from "./OptimisePage";

describe("the Optimise page", () => {
  it("labels a version by target and number", () => {
    expect(versionLabel({ target: "agent", number: 3 })).toBe("agent:3");
  });

  it("marks each line of a prompt diff", () => {
    const diff = "--- react (before)\n+++ react (after)\n@@ -1 +1 @@\n-old\n+new\n same";
    expect(diffLines(diff).map((l) => l.kind)).toEqual(["head", "head", "head", "del", "add", "same"]);
  });
});

describe("a turn's program versions", () => {
  it("names the versions it ran, and nothing for the baseline", () => {
    expect(programsText({ agent: "v1", rlm: null })).toBe("agent v1");
    expect(programsText({})).toBeNull();
  });
});
