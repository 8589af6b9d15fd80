/* One open session's state as a pure reducer: its turns (REST), the tree of each turn (events),
the socket's state, the message being sent and what the server said about it. `useSession`
keeps it in one store and dispatches to it; the socket's callbacks read the store, not copies. */

import type { Attachment, Turn } from "../api/client";
import type { SocketState } from "../api/socket";
import type { FleetEvent } from "../generated/events";
import { isLive, treesReducer, turnStatus, type Trees } from "./trees";

export interface Notice {
  code: string;
  message: string;
}

/** A message sent whose turn has not started yet. */
export interface Outgoing {
  text: string;
  attachments: readonly Attachment[];
}

export interface SessionState {
  sessionId: string | null;
  turns: readonly Turn[];
  trees: Trees;
  /** Turns whose stored events were asked for (or arrived live): not fetched again. */
  loaded: ReadonlySet<string>;
  socketState: SocketState;
  reconnectAttempt: number;
  loading: boolean;
  notice: Notice | null;
  pending: Outgoing | null;
  /** The last message the server refused to start (a new object each time). */
  returned: Outgoing | null;
}

export type SessionAction =
  | { type: "open"; sessionId: string | null }
  /** The session's turns as the server lists them; turns it does not list yet stay. */
  | { type: "turns"; turns: readonly Turn[] }
  /** `live`: from the socket, where a turn not listed yet gets a placeholder. */
  | { type: "events"; events: readonly FleetEvent[]; live: boolean }
  | { type: "socket"; state: SocketState; attempt: number }
  | { type: "loading"; loading: boolean }
  | { type: "notice"; notice: Notice | null }
  | { type: "sent"; message: Outgoing }
  /** The server refused the message (busy, bad limits): it comes back. */
  | { type: "refused"; notice: Notice }
  | { type: "answered"; turnId: string }
  | { type: "load"; turnId: string }
  | { type: "load_failed"; turnId: string; notice: Notice };

export function initialSession(sessionId: string | null = null): SessionState {
  return {
    sessionId,
    turns: [],
    trees: {},
    loaded: new Set(),
    socketState: "connecting",
    reconnectAttempt: 0,
    loading: false,
    notice: null,
    pending: null,
    returned: null,
  };
}

function withLoaded(loaded: ReadonlySet<string>, turnId: string): ReadonlySet<string> {
  return loaded.has(turnId) ? loaded : new Set(loaded).add(turnId);
}

function placeholder(state: SessionState, event: FleetEvent, index: number): Turn {
  // The page's own message names its turn's text and attachments; another client's is listed
  // by the server soon after.
  const mine = state.pending;
  const question = event.type === "turn_started" ? event.question : "";
  return {
    id: event.turn_id,
    session_id: state.sessionId ?? "",
    index,
    user_message: question,
    text: mine?.text ?? question,
    attachments: mine ? mine.attachments.map(({ id, name }) => ({ id, name })) : [],
    answer: null,
    status: "running",
    error: null,
    usage: null,
    question: null,
    trace_id: null,
    programs: event.type === "turn_started" ? event.programs : {},
    created_at: new Date(event.ts * 1000).toISOString(),
    finished_at: null,
  };
}

function applyEvents(state: SessionState, events: readonly FleetEvent[], live: boolean): SessionState {
  const trees = treesReducer(state.trees, { type: "events", events });
  let { turns, loaded, pending } = state;
  for (const event of events) {
    if (!live) {
      loaded = withLoaded(loaded, event.turn_id);
      continue;
    }
    if (!turns.some((t) => t.id === event.turn_id)) {
      turns = [...turns, placeholder({ ...state, pending }, event, turns.length + 1)];
      loaded = withLoaded(loaded, event.turn_id);
      pending = null;
    }
    if (event.type === "turn_started") pending = null;
  }
  if (trees === state.trees && turns === state.turns && loaded === state.loaded && pending === state.pending) return state;
  return { ...state, trees, turns, loaded, pending };
}

export function sessionReducer(state: SessionState, action: SessionAction): SessionState {
  switch (action.type) {
    case "open":
      return initialSession(action.sessionId);
    case "turns": {
      const known = new Set(action.turns.map((t) => t.id));
      const kept = state.turns.filter((t) => !known.has(t.id) && t.session_id === state.sessionId);
      return { ...state, turns: [...action.turns, ...kept] };
    }
    case "events":
      return applyEvents(state, action.events, action.live);
    case "socket":
      return { ...state, socketState: action.state, reconnectAttempt: action.attempt };
    case "loading":
      return { ...state, loading: action.loading };
    case "notice":
      return { ...state, notice: action.notice };
    case "sent":
      return { ...state, notice: null, pending: action.message };
    case "refused":
      return { ...state, notice: action.notice, pending: null, returned: state.pending ? { ...state.pending } : state.returned };
    case "answered":
      return {
        ...state,
        notice: null,
        turns: state.turns.map((t) => (t.id === action.turnId ? { ...t, status: "running", question: null } : t)),
      };
    case "load":
      return { ...state, loaded: withLoaded(state.loaded, action.turnId) };
    case "load_failed": {
      const loaded = new Set(state.loaded);
      loaded.delete(action.turnId);
      return { ...state, loaded, notice: action.notice };
    }
  }
}

/** The turn producing events now, if any. */
export function liveTurn(state: Pick<SessionState, "turns" | "trees">): string | null {
  for (let i = state.turns.length - 1; i >= 0; i--) {
    const t = state.turns[i] as Turn;
    if (turnStatus(t.status, state.trees[t.id]) === "running") return t.id;
  }
  return null;
}

/** Turns to follow on (re)connect: the one in flight, and any this page still thinks is
 * running (it may have ended while the socket was down). */
export function turnsToResume(state: SessionState, active: string | null): string[] {
  const ids = new Set<string>();
  if (active) ids.add(active);
  for (const t of state.turns) if (t.status === "running") ids.add(t.id);
  for (const [id, tree] of Object.entries(state.trees)) if (isLive(tree)) ids.add(id);
  return [...ids];
}

/** A turn the store has not settled although its events ended (its status, its trace id are
 * written a little after turn_finished). */
export function unsettled(state: SessionState): boolean {
  return state.turns.some((t) => t.status === "running" && state.trees[t.id] && !isLive(state.trees[t.id]));
}

/** A store for the reducer: the socket's callbacks read the current state, components
 * subscribe (useSyncExternalStore). */
export class SessionStore {
  private state: SessionState;
  private readonly listeners = new Set<() => void>();

  constructor(state: SessionState = initialSession()) {
    this.state = state;
  }

  getState = (): SessionState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  dispatch = (action: SessionAction): void => {
    const next = sessionReducer(this.state, action);
    if (next === this.state) return;
    this.state = next;
    this.listeners.forEach((f) => f());
  };
}
