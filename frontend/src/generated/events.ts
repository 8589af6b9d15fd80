/* Generated from fleet_rlm.events by `npm run gen:types`. Do not edit: change the Python models
 * and regenerate; `npm run check:types` fails when this file is stale. */

export type FleetEvent =
  | TurnStartedEvent
  | AgentStepEvent
  | ToolResultEvent
  | RlmStartedEvent
  | RlmIterationEvent
  | CodeOutputEvent
  | LmCallEvent
  | BudgetEvent
  | RlmFinishedEvent
  | AskUserEvent
  | AnswerDeltaEvent
  | TurnFinishedEvent
  | ErrorEvent
  | CancelledEvent
  | ArtifactEvent;
export type JsonValue = unknown;

export interface TurnStartedEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "turn_started";
  question: string;
  /**
   * The promoted program version each target runs (agent, rlm); a target left out runs its baseline.
   */
  programs: {
    [k: string]: string;
  };
}
export interface AgentStepEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "agent_step";
  thought: string;
  tool_name: string;
  tool_args: {
    [k: string]: JsonValue;
  };
}
export interface ToolResultEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "tool_result";
  tool_name: string;
  output: string;
  error: boolean;
}
export interface RlmStartedEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "rlm_started";
  model: string;
  sub_model: string;
  signature: string;
  inputs: {
    [k: string]: InputInfo;
  };
  max_iterations: number;
  /**
   * The parent's iteration (code cell) that started this node, if any.
   */
  iteration: number | null;
  /**
   * What this node was asked (a child's `query`, a delegated `question`), cut at 4000 characters; None when it had no such input.
   */
  query: string | null;
}
export interface InputInfo {
  type: string;
  chars: number;
}
export interface RlmIterationEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "rlm_iteration";
  iteration: number;
  reasoning: string;
  code: string;
  /**
   * extract: the fallback that runs when max_iterations is reached.
   */
  phase: "action" | "extract";
}
export interface CodeOutputEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "code_output";
  iteration: number;
  stdout: string;
  stderr: string;
  error_type: string | null;
  error_message: string | null;
  traceback: string | null;
  duration_s: number;
  timed_out: boolean;
  /**
   * The sandbox restarted; variables are gone.
   */
  state_lost: boolean;
}
export interface LmCallEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "lm_call";
  role: "root" | "sub" | "extract" | "agent" | "summary" | "reflection";
  model: string;
  prompt_tokens: number;
  completion_tokens: number;
  /**
   * None: the model has no known price.
   */
  cost_usd: number | null;
  latency_s: number;
  /**
   * The RLM iteration whose code made the call.
   */
  iteration: number | null;
  prompt_preview: string;
  response_preview: string;
  error: string | null;
  /**
   * The tokens and cost are the client's estimate: the provider reported no usage (a call cancelled in flight, or a reply without usage).
   */
  usage_estimated: boolean;
  /**
   * Which request of one model call this is: retries after a provider fault or a reply cut at the token limit count up from 1.
   */
  attempt: number;
  /**
   * The provider's HTTP status of a failed attempt, when it answered.
   */
  http_status: number | null;
  /**
   * Why the reply ended (stop, length, tool_calls), when reported.
   */
  finish_reason: string | null;
  /**
   * This attempt failed (or was cut) and the call is retried after this many seconds; None when it is the call's last attempt.
   */
  retry_in_s: number | null;
  /**
   * The attempt counts as a call in the budget: false only for one that never reached the provider (connection refused).
   */
  counted: boolean;
  /**
   * The call's id for GET /turns/{turn_id}/calls/{call_id} (its request and reply); None when the turn kept no calls (capture off, or no store).
   */
  call_id: string | null;
  /**
   * Why this call's request and reply were not kept although the turn keeps calls (the call store full or unwritable, the call above the size cap).
   */
  capture_missing: string | null;
}
export interface BudgetEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "budget";
  usage: Usage;
  remaining: Remaining;
}
export interface Usage {
  calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  tokens: number;
  usd: number;
  /**
   * Calls whose model has no known price.
   */
  usd_unknown_calls: number;
  elapsed_s: number;
  limits: Limits;
  by_model: {
    [k: string]: ModelUsage;
  };
}
/**
 * None means unlimited.
 */
export interface Limits {
  max_calls: number | null;
  max_tokens: number | null;
  max_usd: number | null;
  max_wall_s: number | null;
  max_depth: number | null;
}
export interface ModelUsage {
  calls: number;
  prompt_tokens: number;
  completion_tokens: number;
  tokens: number;
  usd: number;
  /**
   * Calls whose model has no known price.
   */
  usd_unknown_calls: number;
}
/**
 * What is left per limit; None where unlimited. Sandbox code sees this as `budget()`.
 */
export interface Remaining {
  calls: number | null;
  tokens: number | null;
  usd: number | null;
  wall_s: number | null;
  depth: number | null;
}
export interface RlmFinishedEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "rlm_finished";
  status: "ok" | "extract" | "budget" | "cancelled" | "error";
  answer: {
    [k: string]: JsonValue;
  } | null;
  iterations: number;
  usage: Usage;
}
export interface AskUserEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "ask_user";
  question: string;
  /**
   * Options offered as buttons, if any.
   */
  choices: string[] | null;
  request_id: string;
  /**
   * What the paused turn needs to resume after a restart.
   */
  state: {
    [k: string]: JsonValue;
  };
}
export interface AnswerDeltaEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "answer_delta";
  text: string;
}
export interface TurnFinishedEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "turn_finished";
  /**
   * The turn's status, as its row in the store holds it: waiting (paused on the user) or how it ended.
   */
  status: "ok" | "waiting" | "budget" | "cancelled" | "error" | "interrupted";
  answer: string | null;
  usage: Usage;
}
export interface ErrorEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "error";
  error_type: string;
  message: string;
  detail: string | null;
}
export interface CancelledEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "cancelled";
  partial_answer: {
    [k: string]: JsonValue;
  } | null;
  reason: string;
}
/**
 * A file that code in the session's sandbox wrote under artifacts/ of its workspace, while
 * the agent step running it (its `python` tool) ran: shown under that step and with the
 * answer, fetched through the workspace routes.
 */
export interface ArtifactEvent {
  turn_id: string;
  node_id: string;
  parent_id: string | null;
  depth: number;
  /**
   * Strictly increasing per turn, from 1.
   */
  seq: number;
  /**
   * Unix time in seconds.
   */
  ts: number;
  type: "artifact";
  /**
   * In the session's workspace, e.g. artifacts/plot.png
   */
  path: string;
  size_bytes: number;
  /**
   * From the file's name; application/octet-stream if unknown
   */
  media_type: string;
}
