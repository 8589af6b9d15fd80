/* One WebSocket per open session. It reconnects by itself with backoff; on every connect the
server sends a `session` frame naming the turn in flight, and the caller resumes from the last
seq it saw (the server never replays a turn on its own). */

import type { FleetEvent } from "../generated/events";
import type { ClientFrame, ControlFrame, SessionFrame, SocketError } from "../generated/frames";
import { getToken, notifyUnauthorized } from "./client";

export type { ClientFrame, SessionFrame, SocketError };

/** Everything the server sends: a turn's events, and the frames about the socket itself. An
 * event of kind `error` (a turn failed) and a `socket_error` frame (a frame was refused, this
 * socket fell behind) differ by `type`. */
export type ServerFrame = FleetEvent | ControlFrame;

/** Every event kind, checked against the generated union both ways. */
const EVENT_KINDS: { readonly [K in FleetEvent["type"]]: true } = {
  turn_started: true,
  agent_step: true,
  tool_result: true,
  rlm_started: true,
  rlm_iteration: true,
  code_output: true,
  lm_call: true,
  budget: true,
  rlm_finished: true,
  ask_user: true,
  answer_delta: true,
  turn_finished: true,
  error: true,
  cancelled: true,
  artifact: true,
};

/** The frame's kind by its `type`; null for what is not a frame this client knows. */
export function classify(data: unknown): ServerFrame | null {
  if (!data || typeof data !== "object" || !("type" in data) || typeof data.type !== "string") return null;
  const type = data.type;
  if (type === "session" || type === "socket_error" || Object.hasOwn(EVENT_KINDS, type)) return data as ServerFrame;
  return null;
}

export type SocketState = "connecting" | "open" | "reconnecting" | "closed";

export interface SocketHandlers {
  onEvent: (event: FleetEvent) => void;
  onSocketError: (frame: SocketError) => void;
  onSession: (frame: SessionFrame) => void;
  onState: (state: SocketState, attempt: number) => void;
  /** The server refused the connection for good (another origin, no such session). */
  onRefused: (reason: string) => void;
}

const BACKOFF_MS = [300, 600, 1200, 2500, 5000];

export function socketUrl(sessionId: string): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const token = getToken();
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${proto}//${location.host}/api/v1/sessions/${encodeURIComponent(sessionId)}/ws${query}`;
}

export class SessionSocket {
  private ws: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private queue: ClientFrame[] = [];
  private readonly url: string;
  private readonly handlers: SocketHandlers;

  constructor(sessionId: string, handlers: SocketHandlers) {
    this.url = socketUrl(sessionId);
    this.handlers = handlers;
    this.connect();
  }

  get isOpen(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends now, or as soon as the socket is open again. */
  send(frame: ClientFrame): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
    else this.queue.push(frame);
  }

  resume(turnId: string, lastSeq: number): void {
    this.send({ type: "resume", turn_id: turnId, last_seq: lastSeq });
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close();
    this.handlers.onState("closed", 0);
  }

  private connect(): void {
    if (this.attempt === 0) this.handlers.onState("connecting", 0);
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      this.handlers.onState("open", 0);
      const queued = this.queue;
      this.queue = [];
      for (const frame of queued) ws.send(JSON.stringify(frame));
    };
    ws.onmessage = (message: MessageEvent<string>) => {
      let data: unknown;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      const frame = classify(data);
      if (frame === null) return;
      switch (frame.type) {
        case "session":
          this.handlers.onSession(frame);
          break;
        case "socket_error":
          this.handlers.onSocketError(frame);
          break;
        default:
          this.handlers.onEvent(frame);
      }
    };
    ws.onclose = (close: CloseEvent) => {
      if (this.ws !== ws || this.closed) return;
      if (close.code === 4401 || close.code === 4403 || close.code === 4404) {
        // Refused (no token, another origin, no such session): retrying cannot help.
        this.ws = null;
        if (close.code === 4401) {
          notifyUnauthorized(close.reason || "the server asks for a token");
          this.handlers.onState("closed", 0);
          return;
        }
        this.handlers.onRefused(close.reason || "the server refused the connection");
        this.handlers.onState("closed", 0);
        return;
      }
      this.ws = null;
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] as number;
      this.attempt += 1;
      this.handlers.onState("reconnecting", this.attempt);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }
}
