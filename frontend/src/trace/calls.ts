/* What the call inspector shows of a call, as pure functions (tested in calls.test.ts). */

import type { LmCallDetail } from "../api/client";
import type { LmCallEvent } from "../generated/events";
import type { TurnTree } from "../tree/reducer";

/** Texts longer than this are folded: the long context a prompt carries is mostly one document. */
export const FOLD_CHARS = 2000;
/** What a folded text shows of itself. */
export const FOLD_HEAD = 600;

export interface Folded {
  head: string;
  /** Characters not shown until the reader unfolds the text (0: nothing folded). */
  hidden: number;
}

export function fold(text: string, limit = FOLD_CHARS, head = FOLD_HEAD): Folded {
  if (text.length <= limit) return { head: text, hidden: 0 };
  return { head: text.slice(0, head), hidden: text.length - head };
}

/** The facts of a call the inspector lists: from its stored record when there is one, else from
 * its event. Retries: the attempts of the same call before this one. */
export function callFacts(event: LmCallEvent, detail: LmCallDetail | null): [string, string][] {
  const facts: [string, string][] = [
    ["role", event.role],
    ["model", detail?.model ?? event.model],
    ["prompt tokens", String(detail?.prompt_tokens ?? event.prompt_tokens)],
    ["completion tokens", String(detail?.completion_tokens ?? event.completion_tokens)],
    ["cost", costText(detail ? detail.cost_usd : event.cost_usd)],
    ["latency", `${(detail?.latency_s ?? event.latency_s).toFixed(2)} s`],
    ["finish reason", detail?.finish_reason ?? event.finish_reason ?? "—"],
    ["attempt", String(detail?.attempt ?? event.attempt)],
    ["retries before", String(Math.max(0, (detail?.attempt ?? event.attempt) - 1))],
  ];
  if (event.http_status !== null) facts.push(["HTTP status", String(event.http_status)]);
  if (event.retry_in_s !== null) facts.push(["retried in", `${event.retry_in_s.toFixed(1)} s`]);
  if (event.usage_estimated) facts.push(["usage", "estimated (the provider reported none)"]);
  if (event.counted === false) facts.push(["counted", "no: never reached the provider"]);
  return facts;
}

function costText(usd: number | null): string {
  if (usd === null) return "unknown (no price for the model)";
  return usd === 0 ? "$0" : `$${usd.toFixed(usd < 0.01 ? 6 : 4)}`;
}

/** Why a call has no stored request to show, or null when it has one. */
export function missingPrompt(event: LmCallEvent, detail: LmCallDetail | null, failure: string | null): string | null {
  if (detail) return detail.captured ? null : (detail.missing_reason ?? "no reason given");
  if (event.call_id === null) return event.capture_missing ?? "the turn kept no calls (prompt capture is off)";
  return failure;
}

/** The whole request and reply as one text, for the copy button. */
export function transcript(detail: LmCallDetail): string {
  const parts = detail.messages.map((m) => `[${m.role}]\n${m.content}`);
  if (detail.reply !== null) parts.push(`[reply]\n${detail.reply}`);
  return parts.join("\n\n");
}

/** Every attempt of the model call `call` is one of, in order: the calls of the same node, role
 * and iteration whose attempts count up to the last one (a new call starts again at 1). */
export function attemptsOf(tree: TurnTree, call: LmCallEvent): LmCallEvent[] {
  const same = tree.events.filter(
    (e): e is LmCallEvent => e.type === "lm_call" && e.node_id === call.node_id && e.role === call.role && e.iteration === call.iteration,
  );
  const at = same.findIndex((e) => e.seq === call.seq);
  if (at < 0) return [call];
  let first = at;
  while (first > 0 && (same[first] as LmCallEvent).attempt > 1 && (same[first - 1] as LmCallEvent).attempt === (same[first] as LmCallEvent).attempt - 1) first--;
  let last = at;
  while (last + 1 < same.length && (same[last + 1] as LmCallEvent).attempt === (same[last] as LmCallEvent).attempt + 1) last++;
  return same.slice(first, last + 1);
}
