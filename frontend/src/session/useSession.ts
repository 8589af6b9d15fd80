/* One open session: its turns, the tree of each turn, and the live socket. The state is one
reducer (./state.ts) in one store; this hook wires the socket and the REST reads to it. */

import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";

import { api, errorText, type Attachment, type Turn } from "../api/client";
import { SessionSocket, type SessionFrame, type SocketError, type SocketState } from "../api/socket";
import type { MessageLimits } from "../chat/limits";
import type { FleetEvent } from "../generated/events";
import { liveTurn, SessionStore, turnsToResume, unsettled, type Notice, type Outgoing } from "./state";
import type { Trees } from "./trees";

export type { Notice, Outgoing };

export interface SessionController {
  turns: readonly Turn[];
  trees: Trees;
  socketState: SocketState;
  reconnectAttempt: number;
  loading: boolean;
  notice: Notice | null;
  /** The message sent whose turn has not started yet. */
  pending: Outgoing | null;
  /** The turn producing events now, if any. */
  liveTurnId: string | null;
  /** The last message the server refused to start (a new object each time). */
  returned: Outgoing | null;
  send: (text: string, attachments: readonly Attachment[], limits?: MessageLimits) => void;
  cancel: () => void;
  answer: (turnId: string, text: string) => void;
  /** Close a turn waiting on the user without answering. */
  dismiss: (turnId: string) => void;
  loadTurn: (turnId: string) => void;
  dismissNotice: () => void;
}

const FLUSH_MS = 30;
const SETTLE_MS = [150, 400, 1000, 2000, 4000, 8000];

export function useSession(sessionId: string | null): SessionController {
  const [store] = useState(() => new SessionStore());
  const state = useSyncExternalStore(store.subscribe, store.getState);
  // The socket of the open session: a handle, not state.
  const socket = useRef<SessionSocket | null>(null);
  const { dispatch, getState } = store;

  const refreshTurns = useCallback(
    async (id: string) => {
      const fetched = await api.listTurns(id);
      if (getState().sessionId === id) dispatch({ type: "turns", turns: fetched });
    },
    [dispatch, getState],
  );

  useEffect(() => {
    dispatch({ type: "open", sessionId });
    if (!sessionId) return;
    let stopped = false;
    let buffer: FleetEvent[] = [];
    let flushTimer: ReturnType<typeof setTimeout> | null = null;
    let refreshTimer: ReturnType<typeof setTimeout> | null = null;

    const flush = () => {
      flushTimer = null;
      const events = buffer;
      buffer = [];
      if (!stopped && events.length) dispatch({ type: "events", events, live: true });
    };
    // The store settles a turn (its status, its trace id) a little after its last event, once
    // the trace is written: ask again until every turn whose events ended is settled there too.
    const refreshSoon = (attempt = 0) => {
      if (refreshTimer) clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => {
        if (stopped) return;
        refreshTurns(sessionId).then(() => {
          if (unsettled(getState()) && !stopped && attempt + 1 < SETTLE_MS.length) refreshSoon(attempt + 1);
        }, () => undefined);
      }, SETTLE_MS[attempt]);
    };
    const onEvent = (event: FleetEvent) => {
      const known = getState().turns.some((t) => t.id === event.turn_id) || buffer.some((e) => e.turn_id === event.turn_id);
      buffer.push(event);
      if (!known) {
        // A new turn: shown at once; another client's message is then listed by the server.
        const fromHere = getState().pending !== null;
        flush();
        if (!fromHere) refreshSoon();
      }
      flushTimer ??= setTimeout(flush, FLUSH_MS);
      if (event.type === "turn_finished") refreshSoon();
    };
    const onSocketError = (frame: SocketError) => {
      if (frame.code === "overflow") {
        const current = getState();
        const turnId = frame.turn_id ?? liveTurn(current);
        const last = current.trees[turnId ?? ""]?.lastSeq ?? 0;
        if (turnId) socket.current?.resume(turnId, Math.min(last, frame.resume_from ?? last));
        return;
      }
      dispatch({ type: "refused", notice: { code: frame.code, message: frame.message } });
    };
    // On every connect: follow the turn in flight, and finish any turn this page still thinks
    // is running, from the last seq seen.
    const onSession = (frame: SessionFrame) => {
      const current = getState();
      const active = frame.active_turn;
      for (const turnId of turnsToResume(current, active?.turn_id ?? null)) {
        socket.current?.resume(turnId, current.trees[turnId]?.lastSeq ?? 0);
      }
      if (!active || !current.turns.some((t) => t.id === active.turn_id)) refreshSoon();
    };

    // The socket opens at once, so a message sent while the history loads is not lost; what
    // the socket and the history both deliver is applied once.
    socket.current = new SessionSocket(sessionId, {
      onEvent,
      onSocketError,
      onSession,
      onState: (state, attempt) => dispatch({ type: "socket", state, attempt }),
      onRefused: (reason) => dispatch({ type: "notice", notice: { code: "refused", message: reason } }),
    });
    dispatch({ type: "loading", loading: true });
    (async () => {
      await refreshTurns(sessionId);
      const list = getState().turns;
      const wanted = list.filter(
        (t, i) => i === list.length - 1 || t.status === "running" || t.status === "waiting",
      );
      for (const t of wanted) {
        const page = await api.turnEvents(t.id);
        if (stopped) return;
        dispatch({ type: "events", events: page.events, live: false });
        dispatch({ type: "load", turnId: t.id });
      }
    })()
      .catch((e: unknown) => {
        if (!stopped) dispatch({ type: "notice", notice: { code: "load_failed", message: errorText(e) } });
      })
      .finally(() => {
        if (!stopped) dispatch({ type: "loading", loading: false });
      });

    return () => {
      stopped = true;
      if (flushTimer) clearTimeout(flushTimer);
      if (refreshTimer) clearTimeout(refreshTimer);
      socket.current?.close();
      socket.current = null;
    };
  }, [sessionId, refreshTurns, dispatch, getState]);

  const loadTurn = useCallback(
    (turnId: string) => {
      if (getState().loaded.has(turnId)) return;
      dispatch({ type: "load", turnId });
      api
        .turnEvents(turnId)
        .then((page) => dispatch({ type: "events", events: page.events, live: false }))
        .catch((e: unknown) => dispatch({ type: "load_failed", turnId, notice: { code: "load_failed", message: errorText(e) } }));
    },
    [dispatch, getState],
  );

  const send = useCallback(
    (text: string, attachments: readonly Attachment[], limits: MessageLimits = {}) => {
      dispatch({ type: "sent", message: { text, attachments } });
      socket.current?.send({
        type: "message",
        text,
        ...(attachments.length ? { attachments: attachments.map((a) => a.id) } : {}),
        ...(Object.keys(limits).length ? { limits } : {}),
      });
    },
    [dispatch],
  );

  const cancel = useCallback(() => {
    const turnId = liveTurn(getState());
    socket.current?.send(turnId ? { type: "cancel", turn_id: turnId } : { type: "cancel" });
  }, [getState]);

  const answer = useCallback(
    (turnId: string, text: string) => {
      socket.current?.send({ type: "answer", turn_id: turnId, text });
      dispatch({ type: "answered", turnId });
    },
    [dispatch],
  );

  const dismiss = useCallback((turnId: string) => {
    socket.current?.send({ type: "cancel", turn_id: turnId });
  }, []);

  const dismissNotice = useCallback(() => dispatch({ type: "notice", notice: null }), [dispatch]);

  const liveTurnId = useMemo(() => liveTurn(state), [state]);

  return {
    turns: state.turns,
    trees: state.trees,
    socketState: state.socketState,
    reconnectAttempt: state.reconnectAttempt,
    loading: state.loading,
    notice: state.notice,
    pending: state.pending,
    returned: state.returned,
    liveTurnId,
    send,
    cancel,
    answer,
    dismiss,
    loadTurn,
    dismissNotice,
  };
}
