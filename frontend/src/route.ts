/* Routes live in the hash, so any URL the server serves loads the app and a reload keeps the
page and session. A step of a turn has its own address, which opens exactly that step:
#/s/SESSION/t/TURN[/n/NODE[/c/CALL]]. The turns view keeps its search in the address
(#/turns?q=…&status=…), so a search is a link too. */

/** Where in a session the reader is: a turn, a node of its tree, a model call of that node. */
export interface Step {
  turnId: string | null;
  nodeId: string | null;
  /** The call's call_id, or `seq:N` for a call recorded without one. */
  callId: string | null;
}

/** The search of the turns view: every filter the server's GET /turns takes, as text. */
export type TurnFilters = Partial<Record<TurnFilterName, string>>;
export const TURN_FILTERS = [
  "q", "status", "model", "min_cost", "max_cost", "min_duration_s", "max_duration_s", "since", "until", "tag", "sort", "order",
] as const;
export type TurnFilterName = (typeof TURN_FILTERS)[number];

/** Whose usage by model: one turn, one session, or a date range (either end open). */
export type UsageScope =
  | { kind: "turn"; turnId: string }
  | { kind: "session"; sessionId: string }
  | { kind: "range"; since: string; until: string };

export type Route =
  | { page: "workbench"; sessionId: string | null; step: Step }
  | { page: "documents" }
  | { page: "settings" }
  | { page: "usage"; scope: UsageScope }
  | { page: "turns"; filters: TurnFilters }
  | { page: "compare"; a: string; b: string }
  | { page: "optimise" };

const NO_STEP: Step = { turnId: null, nodeId: null, callId: null };
const dec = (s: string | undefined): string | null => (s === undefined ? null : decodeURIComponent(s));
const enc = encodeURIComponent;

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, "");
  const [path = "", search = ""] = raw.split("?", 2);
  const params = new URLSearchParams(search);
  const session = /^\/s\/([^/]+)(?:\/t\/([^/]+)(?:\/n\/([^/]+)(?:\/c\/([^/]+))?)?)?/.exec(path);
  if (session) {
    return {
      page: "workbench",
      sessionId: dec(session[1]),
      step: { turnId: dec(session[2]), nodeId: dec(session[3]), callId: dec(session[4]) },
    };
  }
  if (path.startsWith("/documents")) return { page: "documents" };
  if (path.startsWith("/settings")) return { page: "settings" };
  if (path.startsWith("/usage")) return { page: "usage", scope: usageScope(params) };
  if (path.startsWith("/optimise")) return { page: "optimise" };
  if (path.startsWith("/turns")) {
    const filters: TurnFilters = {};
    for (const name of TURN_FILTERS) {
      const v = params.get(name);
      if (v) filters[name] = v;
    }
    return { page: "turns", filters };
  }
  const compare = /^\/compare\/([^/]+)\/([^/]+)/.exec(path);
  if (compare) return { page: "compare", a: dec(compare[1]) as string, b: dec(compare[2]) as string };
  return { page: "workbench", sessionId: null, step: NO_STEP };
}

function usageScope(params: URLSearchParams): UsageScope {
  const turn = params.get("turn");
  if (turn) return { kind: "turn", turnId: turn };
  const session = params.get("session");
  if (session) return { kind: "session", sessionId: session };
  return { kind: "range", since: params.get("since") ?? "", until: params.get("until") ?? "" };
}

export function sessionHref(id: string): string {
  return `#/s/${enc(id)}`;
}

/** The address of a step: the turn, a node of it, a call of that node. */
export function stepHref(sessionId: string, step: Partial<Step>): string {
  let href = sessionHref(sessionId);
  if (!step.turnId) return href;
  href += `/t/${enc(step.turnId)}`;
  if (!step.nodeId) return href;
  href += `/n/${enc(step.nodeId)}`;
  return step.callId ? `${href}/c/${enc(step.callId)}` : href;
}

export function turnsHref(filters: TurnFilters = {}): string {
  const params = new URLSearchParams();
  for (const name of TURN_FILTERS) {
    const v = filters[name];
    if (v) params.set(name, v);
  }
  const text = params.toString();
  return text ? `#/turns?${text}` : "#/turns";
}

export function compareHref(a: string, b: string): string {
  return `#/compare/${enc(a)}/${enc(b)}`;
}

export function usageHref(scope: UsageScope): string {
  const params = new URLSearchParams();
  if (scope.kind === "turn") params.set("turn", scope.turnId);
  else if (scope.kind === "session") params.set("session", scope.sessionId);
  else {
    if (scope.since) params.set("since", scope.since);
    if (scope.until) params.set("until", scope.until);
  }
  const text = params.toString();
  return text ? `#/usage?${text}` : "#/usage";
}

/** A turn of a session, shown in the tree: a link to it opens the session with that turn. */
export function turnHref(sessionId: string, turnId: string): string {
  return `${sessionHref(sessionId)}/t/${encodeURIComponent(turnId)}`;
}
