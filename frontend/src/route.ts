/* Routes live in the hash, so any URL the server serves loads the app and a reload keeps the
page and session. */

export type Route =
  | { page: "workbench"; sessionId: string | null }
  | { page: "documents" }
  | { page: "settings" }
  | { page: "usage" }
  | { page: "optimise" };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "");
  const session = /^\/s\/([^/?#]+)/.exec(path);
  if (session) return { page: "workbench", sessionId: decodeURIComponent(session[1] as string) };
  if (path.startsWith("/documents")) return { page: "documents" };
  if (path.startsWith("/settings")) return { page: "settings" };
  if (path.startsWith("/usage")) return { page: "usage" };
  if (path.startsWith("/optimise")) return { page: "optimise" };
  return { page: "workbench", sessionId: null };
}

export function sessionHref(id: string): string {
  return `#/s/${encodeURIComponent(id)}`;
}
