import { describe, expect, it } from "vitest";

import { ApiError } from "../api/client";
import { feedbackProblem, shortTrace } from "./feedback";

describe("feedbackProblem", () => {
  it("explains a turn still running", () => {
    expect(feedbackProblem(new ApiError(409, "not_finished", "turn t is running"))).toMatch(/has not finished yet/);
  });

  it("passes any other failure on with the server's words", () => {
    expect(feedbackProblem(new ApiError(502, "tracking_store", "the MLflow store is down"))).toBe(
      "Feedback was not recorded: the MLflow store is down",
    );
  });
});

describe("shortTrace", () => {
  it("keeps short ids and clips long ones", () => {
    expect(shortTrace("tr-1")).toBe("tr-1");
    expect(shortTrace("tr-0123456789abcdef")).toBe("tr-012345678…");
  });
});
