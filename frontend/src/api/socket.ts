/* One WebSocket per open session. It reconnects by itself with backoff; on every connect the
server sends a `session` frame naming the turn in flight, and the caller resumes from the last
seq it saw (the server never replays a turn on its own). */

import type { FleetEvent } from "../generated/events";
import { getToken, notifyUnauthorized } from "./client";

export type ClientFrame =
  | { type: "message"; text: string; document_ids?: string[]; limits?: Record<string, number | string> }
  | { type: "cancel"; turn_id?: string }
  | { type: "answer"; turn_id: string; text: string }
  | { type: "resume"; turn_id: string; last_seq: number };

/** A frame about the connection or a request, not an event of a turn. */
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  turn_id?: string;
  resume_from?: number;
}

/** Sent on connect, and when a turn waiting on the user is closed. */
export interface SessionFrame {
  type: "session";
  session_id: string;
  active_turn: { turn_id: string; status: string; last_seq: number; question: string | null } | null;
}

export type SocketState = "connecting" | "open" | "reconnecting" | "closed";

export interface SocketHandlers {
  onEvent: (event: FleetEvent) => void;
  onErrorFrame: (frame: ErrorFrame) => void;
  onSession: (frame: SessionFrame) => void;
  onState: (state: SocketState, attempt: number) => void;
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
      if (!data || typeof data !== "object") return;
      const frame = data as Record<string, unknown>;
      if (frame.type === "session") {
        this.handlers.onSession(frame as unknown as SessionFrame);
      } else if (frame.type === "error" && typeof frame.code === "string" && !("seq" in frame)) {
        this.handlers.onErrorFrame(frame as unknown as ErrorFrame);
      } else if (typeof frame.seq === "number" && typeof frame.turn_id === "string") {
        this.handlers.onEvent(frame as unknown as FleetEvent);
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
        this.handlers.onErrorFrame({ type: "error", code: `ws_${close.code}`, message: close.reason || "the server refused the connection" });
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
