/* Generated from fleet_rlm.server.frames by `npm run gen:types`. Do not edit: change the Python models
 * and regenerate; `npm run check:types` fails when this file is stale. */

export type WebSocketFrame = ClientFrame | ControlFrame;
export type ClientFrame = MessageFrame | AnswerFrame | CancelFrame | ResumeFrame;
export type ControlFrame = SessionFrame | SocketError;

/**
 * Start a turn (`busy` if one is in flight).
 */
export interface MessageFrame {
  /**
   * Echoed in error frames about this frame.
   */
  id?: string | number | null;
  type: "message";
  text: string;
  /**
   * Ids of the session's documents sent with the message.
   */
  attachments?: string[];
  /**
   * @deprecated
   * Deprecated name of `attachments`, still accepted.
   */
  document_ids?: string[];
  /**
   * Lower limits for this turn (a message may only lower them), by the names of the settings: max_calls, max_tokens, max_usd, max_wall_s, max_depth, max_iterations (max_lm_calls, the old name of max_calls, is still accepted).
   */
  limits?: {
    [k: string]: unknown;
  } | null;
}
/**
 * Answer the turn's ask_user; it goes on.
 */
export interface AnswerFrame {
  /**
   * Echoed in error frames about this frame.
   */
  id?: string | number | null;
  type: "answer";
  turn_id: string;
  text: string;
}
/**
 * Cancel the turn in flight (default: the session's), or dismiss one waiting.
 */
export interface CancelFrame {
  /**
   * Echoed in error frames about this frame.
   */
  id?: string | number | null;
  type: "cancel";
  turn_id?: string | null;
}
/**
 * Send the turn's events after last_seq, then live ones.
 */
export interface ResumeFrame {
  /**
   * Echoed in error frames about this frame.
   */
  id?: string | number | null;
  type: "resume";
  turn_id: string;
  last_seq?: number;
}
/**
 * Sent on connect, and when a turn waiting on the user is closed.
 */
export interface SessionFrame {
  type: "session";
  session_id: string;
  /**
   * The turn in flight, which a (re)connecting client resumes.
   */
  active_turn: ActiveTurn | null;
}
export interface ActiveTurn {
  turn_id: string;
  /**
   * running, or waiting (on the user's answer).
   */
  status: "running" | "waiting";
  /**
   * The turn's last event so far.
   */
  last_seq: number;
  /**
   * What a waiting turn asks the user.
   */
  question: string | null;
}
/**
 * A frame that could not be served, or a turn this socket stopped following (`overflow`,
 * `internal`: resume from `resume_from`). The socket stays open. Fields other than `code` and
 * `message` are present only where they apply.
 */
export interface SocketError {
  type: "socket_error";
  code:
    | "bad_json"
    | "bad_frame"
    | "unknown_type"
    | "busy"
    | "read_only"
    | "invalid"
    | "not_found"
    | "not_running"
    | "overflow"
    | "unavailable"
    | "internal";
  message: string;
  /**
   * The `id` of the frame this is about.
   */
  id?: string | number | null;
  turn_id?: string | null;
  /**
   * overflow, internal: the seq to resume after.
   */
  resume_from?: number | null;
  /**
   * unavailable: seconds to wait.
   */
  retry_after?: number | null;
  /**
   * invalid limits: the limit asked above its ceiling.
   */
  field?: string | null;
  server_limit?: number | null;
  tenant_limit?: number | null;
}
