/* One open session: its turns, the tree of each turn, and the live socket. */

import { useCallback, useEffect, useReducer, useRef, useState } from "react";

import { api, errorText, type Turn } from "../api/client";
import type { MessageLimits } from "../chat/limits";
import { SessionSocket, type ErrorFrame, type SessionFrame, type SocketState } from "../api/socket";
import type { FleetEvent } from "../generated/events";
import { isLive, treesReducer, turnStatus, type Trees } from "./trees";

export interface Notice {
  code: string;
  message: string;
}

export interface SessionController {
  turns: Turn[];
  trees: Trees;
  socketState: SocketState;
  reconnectAttempt: number;
  loading: boolean;
  notice: Notice | null;
  /** The message sent whose turn has not started yet. */
  pending: string | null;
  /** The turn producing events now, if any. */
  liveTurnId: string | null;
  /** The last message the server refused to start (a new object each time). */
  returned: { text: string } | null;
  send: (text: string, documentIds: string[], limits?: MessageLimits) => void;
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
  const [turns, setTurns] = useState<Turn[]>([]);
  const [trees, dispatch] = useReducer(treesReducer, {});
  const [socketState, setSocketState] = useState<SocketState>("connecting");
  const [reconnectAttempt, setReconnectAttempt] = useState(0);
  const [loading, setLoading] = useState(false);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [pending, setPending] = useState<string | null>(null);
  const [returned, setReturned] = useState<{ text: string } | null>(null);
  const pendingRef = useRef<string | null>(null);

  const socket = useRef<SessionSocket | null>(null);
  const treesRef = useRef(trees);
  const turnsRef = useRef(turns);
  const loaded = useRef(new Set<string>());
  useEffect(() => {
    treesRef.current = trees;
    turnsRef.current = turns;
  }, [trees, turns]);

  const refreshTurns = useCallback(async (id: string) => {
    const fetched = await api.listTurns(id);
    // A turn whose events arrived after the list was read stays.
    const known = new Set(fetched.map((t) => t.id));
    const list = [...fetched, ...turnsRef.current.filter((t) => !known.has(t.id) && t.session_id === id)];
    turnsRef.current = list;
    setTurns(list);
    return list;
  }, []);

  useEffect(() => {
    dispatch({ type: "clear" });
    setTurns([]);
    setNotice(null);
    setPending(null);
    pendingRef.current = null;
    loaded.current = new Set();
    treesRef.current = {};
    turnsRef.current = [];
    if (!sessionId) return;
    let stopped = false;
    let buffer: FleetEvent[] = [];
    let flushTimer: ReturnType<typeof setTimeout> | null = null;
    let refreshTimer: ReturnType<typeof setTimeout> | null = null;

    const flush = () => {
      flushTimer = null;
      const events = buffer;
      buffer = [];
      if (!stopped && events.length) dispatch({ type: "events", events });
    };
    // The store settles a turn (its status, its trace id) a little after its last event, once
    // the trace is written: ask again until every turn whose events ended is settled there too.
    const refreshSoon = (attempt = 0) => {
      if (refreshTimer) clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => {
        if (stopped) return;
        refreshTurns(sessionId).then((list) => {
          const unsettled = list.some((t) => t.status === "running" && treesRef.current[t.id] && !isLive(treesRef.current[t.id]));
          if (unsettled && !stopped && attempt + 1 < SETTLE_MS.length) refreshSoon(attempt + 1);
        }, () => undefined);
      }, SETTLE_MS[attempt]);
    };
    const onEvent = (event: FleetEvent) => {
      buffer.push(event);
      flushTimer ??= setTimeout(flush, FLUSH_MS);
      if (!turnsRef.current.some((t) => t.id === event.turn_id)) {
        const placeholder: Turn = {
          id: event.turn_id,
          session_id: sessionId,
          index: turnsRef.current.length + 1,
          user_message: event.type === "turn_started" ? event.question : "",
          answer: null,
          status: "running",
          error: null,
          usage: null,
          question: null,
          trace_id: null,
          created_at: new Date(event.ts * 1000).toISOString(),
          finished_at: null,
        };
        turnsRef.current = [...turnsRef.current, placeholder];
        setTurns(turnsRef.current);
        loaded.current.add(event.turn_id);
        pendingRef.current = null;
        setPending(null);
      }
      if (event.type === "turn_started") {
        pendingRef.current = null;
        setPending(null);
      }
      if (event.type === "turn_finished") refreshSoon();
    };
    const onErrorFrame = (frame: ErrorFrame) => {
      if (frame.code === "overflow") {
        const turnId = frame.turn_id ?? liveTurn(turnsRef.current, treesRef.current);
        const last = treesRef.current[turnId ?? ""]?.lastSeq ?? 0;
        if (turnId) socket.current?.resume(turnId, Math.min(last, frame.resume_from ?? last));
        return;
      }
      if (pendingRef.current !== null) setReturned({ text: pendingRef.current });
      pendingRef.current = null;
      setPending(null);
      setNotice({ code: frame.code, message: frame.message });
    };
    // On every connect: follow the turn in flight, and finish any turn this page still thinks
    // is running (it may have ended while the socket was down), from the last seq seen.
    const onSession = (frame: SessionFrame) => {
      const ids = new Set<string>();
      const active = frame.active_turn;
      if (active) ids.add(active.turn_id);
      for (const t of turnsRef.current) if (t.status === "running") ids.add(t.id);
      for (const [id, tree] of Object.entries(treesRef.current)) if (isLive(tree)) ids.add(id);
      for (const turnId of ids) socket.current?.resume(turnId, treesRef.current[turnId]?.lastSeq ?? 0);
      if (active && !turnsRef.current.some((t) => t.id === active.turn_id)) refreshSoon();
      if (!active) refreshSoon();
    };

    // The socket opens at once, so a message sent while the history loads is not lost; what
    // the socket and the history both deliver is applied once.
    socket.current = new SessionSocket(sessionId, {
      onEvent,
      onErrorFrame,
      onSession,
      onState: (state, attempt) => {
        setSocketState(state);
        setReconnectAttempt(attempt);
      },
    });
    setLoading(true);
    (async () => {
      const list = await refreshTurns(sessionId);
      const wanted = list.filter(
        (t, i) => i === list.length - 1 || t.status === "running" || t.status === "waiting",
      );
      for (const t of wanted) {
        const page = await api.turnEvents(t.id);
        if (stopped) return;
        loaded.current.add(t.id);
        dispatch({ type: "events", events: page.events });
        treesRef.current = treesReducer(treesRef.current, { type: "events", events: page.events });
      }
    })()
      .catch((e: unknown) => {
        if (!stopped) setNotice({ code: "load_failed", message: errorText(e) });
      })
      .finally(() => {
        if (!stopped) setLoading(false);
      });

    return () => {
      stopped = true;
      if (flushTimer) clearTimeout(flushTimer);
      if (refreshTimer) clearTimeout(refreshTimer);
      socket.current?.close();
      socket.current = null;
    };
  }, [sessionId, refreshTurns]);

  const loadTurn = useCallback((turnId: string) => {
    if (loaded.current.has(turnId)) return;
    loaded.current.add(turnId);
    api
      .turnEvents(turnId)
      .then((page) => dispatch({ type: "events", events: page.events }))
      .catch((e: unknown) => {
        loaded.current.delete(turnId);
        setNotice({ code: "load_failed", message: errorText(e) });
      });
  }, []);

  const send = useCallback((text: string, documentIds: string[], limits: MessageLimits = {}) => {
    setNotice(null);
    setPending(text);
    pendingRef.current = text;
    socket.current?.send({
      type: "message",
      text,
      ...(documentIds.length ? { document_ids: documentIds } : {}),
      ...(Object.keys(limits).length ? { limits } : {}),
    });
  }, []);

  const liveTurnId = liveTurn(turns, trees);

  const cancel = useCallback(() => {
    const turnId = liveTurn(turnsRef.current, treesRef.current);
    socket.current?.send(turnId ? { type: "cancel", turn_id: turnId } : { type: "cancel" });
  }, []);

  const answer = useCallback((turnId: string, text: string) => {
    setNotice(null);
    socket.current?.send({ type: "answer", turn_id: turnId, text });
    turnsRef.current = turnsRef.current.map((t) =>
      t.id === turnId ? { ...t, status: "running", question: null } : t,
    );
    setTurns(turnsRef.current);
  }, []);

  const dismiss = useCallback((turnId: string) => {
    socket.current?.send({ type: "cancel", turn_id: turnId });
  }, []);

  return {
    dismiss,
    turns,
    trees,
    socketState,
    reconnectAttempt,
    loading,
    notice,
    pending,
    returned,
    liveTurnId,
    send,
    cancel,
    answer,
    loadTurn,
    dismissNotice: () => setNotice(null),
  };
}

function liveTurn(turns: readonly Turn[], trees: Trees): string | null {
  for (let i = turns.length - 1; i >= 0; i--) {
    const t = turns[i] as Turn;
    const tree = trees[t.id];
    if (turnStatus(t.status, tree) === "running") return t.id;
  }
  return null;
}
