/* What to tell a person whose feedback the server could not record. */

import { ApiError, errorText } from "../api/client";

export function feedbackProblem(e: unknown): string {
  if (e instanceof ApiError && e.status === 409) {
    if (e.code === "not_finished") {
      return "This turn has not finished yet: feedback is on finished turns.";
    }
  }
  return `Feedback was not recorded: ${errorText(e)}`;
}

/** A trace id short enough for a line of text; the full one is in the title and the copy. */
export function shortTrace(traceId: string): string {
  return traceId.length > 14 ? `${traceId.slice(0, 12)}…` : traceId;
}
