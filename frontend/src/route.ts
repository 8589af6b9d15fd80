/* Routes live in the hash, so any URL the server serves loads the app and a reload keeps the
page and session. */

export type Route =
  | { page: "workbench"; sessionId: string | null; turnId?: string }
  | { page: "documents" }
  | { page: "settings" }
  | { page: "usage" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "");
  const session = /^\/s\/([^/?#]+)(?:\/t\/([^/?#]+))?/.exec(path);
  if (session) {
    const sessionId = decodeURIComponent(session[1] as string);
    return session[2] ? { page: "workbench", sessionId, turnId: decodeURIComponent(session[2]) } : { page: "workbench", sessionId };
  }
  if (path.startsWith("/documents")) return { page: "documents" };
  if (path.startsWith("/settings")) return { page: "settings" };
  if (path.startsWith("/usage")) return { page: "usage" };
  return { page: "workbench", sessionId: null };
}

export function sessionHref(id: string): string {
  return `#/s/${encodeURIComponent(id)}`;
}

/** A turn of a session, shown in the tree: a link to it opens the session with that turn. */
export function turnHref(sessionId: string, turnId: string): string {
  return `${sessionHref(sessionId)}/t/${encodeURIComponent(turnId)}`;
}
