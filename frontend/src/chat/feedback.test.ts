import { describe, expect, it } from "vitest";

import { ApiError } from "../api/client";
import { feedbackProblem, shortTrace } from "./feedback";

describe("feedbackProblem", () => {
  it("explains that tracing is off", () => {
    const text = feedbackProblem(new ApiError(409, "tracing_off", "tracing is not configured"));
    expect(text).toMatch(/^Feedback needs MLflow tracing: set FLEET_MLFLOW_TRACKING_URI/);
  });

  it("explains a turn without a trace", () => {
    expect(feedbackProblem(new ApiError(409, "no_trace", "turn t has no trace"))).toMatch(/no MLflow trace/);
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
