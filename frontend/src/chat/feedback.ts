/* What to tell a person whose feedback the server could not record. */

import { ApiError, errorText } from "../api/client";

export function feedbackProblem(e: unknown): string {
  if (e instanceof ApiError && e.status === 409) {
    if (e.code === "tracing_off") {
      return "Feedback needs MLflow tracing: set FLEET_MLFLOW_TRACKING_URI on the server and restart it; turns finished from then on can take feedback.";
    }
    if (e.code === "no_trace") {
      return "This turn has no MLflow trace (it finished while tracing was off, or its trace is still being written), so feedback cannot be recorded for it.";
    }
  }
  return `Feedback was not recorded: ${errorText(e)}`;
}

/** A trace id short enough for a line of text; the full one is in the title and the copy. */
export function shortTrace(traceId: string): string {
  return traceId.length > 14 ? `${traceId.slice(0, 12)}…` : traceId;
}
