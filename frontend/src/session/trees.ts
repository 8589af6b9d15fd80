/* The trees of every turn of one session, keyed by turn id: events are routed by turn_id. */

import type { FleetEvent } from "../generated/events";
import type { components } from "../generated/api";
import type { Turn } from "../api/client";
import { applyEvents, emptyTree, type TurnState, type TurnTree } from "../tree/reducer";

type TurnStatus = components["schemas"]["TurnStatus"];

export type Trees = Readonly<Record<string, TurnTree>>;

export type TreesAction = { type: "events"; events: readonly FleetEvent[] } | { type: "clear" };

export function treesReducer(trees: Trees, action: TreesAction): Trees {
  if (action.type === "clear") return {};
  const byTurn = new Map<string, FleetEvent[]>();
  for (const e of action.events) {
    const list = byTurn.get(e.turn_id);
    if (list) list.push(e);
    else byTurn.set(e.turn_id, [e]);
  }
  let next: Record<string, TurnTree> | null = null;
  for (const [turnId, events] of byTurn) {
    const before = trees[turnId] ?? emptyTree(turnId);
    const after = applyEvents(before, events);
    if (after !== trees[turnId]) {
      next ??= { ...trees };
      next[turnId] = after;
    }
  }
  return next ?? trees;
}

/** A turn still producing events, as far as its tree tells. */
export function isLive(tree: TurnTree | undefined): boolean {
  return tree !== undefined && (tree.status === "running" || tree.status === "idle");
}

const SETTLED: ReadonlySet<string> = new Set(["ok", "error", "budget", "cancelled", "interrupted", "extract"]);

/** What a turn is doing. Its row and its events say it in the same words (TurnStatus); the
 * events tell first, unless the store has settled the turn without an event (a waiting turn
 * dismissed, a run cut short by a server restart before it was closed). */
export function turnStatus(stored: TurnStatus, tree: TurnTree | undefined): TurnState {
  if (tree && SETTLED.has(tree.status)) return tree.status;
  if (stored !== "running" && stored !== "waiting") return stored;
  return tree && tree.status !== "idle" ? tree.status : stored;
}

export interface Exchange {
  question: string;
  /** The user's reply; null while the question waits. */
  reply: string | null;
}

/** The questions a turn asked the user and the replies, for the transcript: from its events
 * when they are loaded (live), else as the server lists the turn. */
export function askedOf(turn: Pick<Turn, "asked">, tree: TurnTree | undefined): Exchange[] {
  if (!tree || !tree.events.length) return (turn.asked ?? []).map((a) => ({ question: a.question, reply: a.reply }));
  const asked: Exchange[] = [];
  for (const e of tree.events) {
    if (e.type === "ask_user") asked.push({ question: e.question, reply: null });
    else if (e.type === "tool_result" && e.tool_name === "ask_user") {
      const last = asked.at(-1);
      if (last && last.reply === null) last.reply = e.output;
    }
  }
  return asked;
}

/** The turn waiting on the user's answer, if any: the session takes no other message. */
export function waitingTurn(turns: readonly Turn[], trees: Trees): Turn | null {
  return turns.find((t) => turnStatus(t.status, trees[t.id]) === "waiting") ?? null;
}
