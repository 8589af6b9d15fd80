import { lazy, Suspense, useCallback, useEffect, useRef, useState } from "react";

import { ApiError, api, errorText, getToken, onUnauthorized, setToken, type Session, type SettingsOut } from "./api/client";
import { parseRoute, sessionHref, type Route } from "./route";
import { Sidebar } from "./Sidebar";
import { download } from "./ui/download";
import { HelpDialog } from "./ui/HelpDialog";
import { SignInDialog } from "./ui/SignInDialog";
import { useTheme } from "./ui/theme";
import { Icon } from "./ui/Icon";
import { Workbench } from "./Workbench";

// The pages besides the Workbench load when first opened.
const TurnsPage = lazy(() => import("./pages/TurnsPage"));
const ComparePage = lazy(() => import("./pages/ComparePage"));
const DocumentsPage = lazy(() => import("./pages/DocumentsPage").then((m) => ({ default: m.DocumentsPage })));
const SettingsPage = lazy(() => import("./pages/SettingsPage").then((m) => ({ default: m.SettingsPage })));
const UsagePage = lazy(() => import("./pages/UsagePage").then((m) => ({ default: m.UsagePage })));
const OptimisePage = lazy(() => import("./pages/OptimisePage").then((m) => ({ default: m.OptimisePage })));

const LAST_SESSION = "fleet.lastSession";
const DEFAULT_TITLE = "New session";

function isTyping(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  return !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

/** A 401 is answered by the sign-in dialog, not by an error banner. */
function shown(e: unknown): string | null {
  return e instanceof ApiError && e.status === 401 ? null : errorText(e);
}

export function App() {
  const route = useRoute();
  const { theme, effective, cycle } = useTheme();
  const [sessions, setSessions] = useState<Session[]>([]);
  const [total, setTotal] = useState(0);
  const [query, setQuery] = useState("");
  const [showArchived, setShowArchived] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [help, setHelp] = useState(false);
  const [menu, setMenu] = useState(false);
  // Set while the server wants a token: its reason. The version remounts what holds a socket.
  const [authReason, setAuthReason] = useState<string | null>(null);
  const [authVersion, setAuthVersion] = useState(0);
  const [signedIn, setSignedIn] = useState(() => getToken() !== null);
  const [settings, setSettings] = useState<SettingsOut | null>(null);
  const search = useRef<HTMLInputElement>(null);
  const routeSession = route.page === "workbench" ? route.sessionId : null;
  const [docSession, setDocSession] = useState<string | null>(() => localStorage.getItem(LAST_SESSION));

  useEffect(() => onUnauthorized((reason) => setAuthReason(reason)), []);

  const reload = useCallback(async () => {
    try {
      const list = await api.listSessions(query, 200, 0, showArchived);
      setSessions(list.items);
      setTotal(list.total);
      setError(null);
    } catch (e) {
      setError(shown(e));
    }
  }, [query, showArchived]);

  useEffect(() => {
    const t = setTimeout(() => void reload(), query ? 150 : 0);
    return () => clearTimeout(t);
  }, [reload, query]);

  useEffect(() => {
    api.getSettings().then(setSettings, () => undefined);
  }, [authVersion]);

  useEffect(() => {
    if (routeSession) {
      localStorage.setItem(LAST_SESSION, routeSession);
      setDocSession(routeSession);
    }
  }, [routeSession]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "k") {
        e.preventDefault();
        setMenu(true);
        search.current?.focus();
        search.current?.select();
      } else if (e.key === "?" && !isTyping(e.target)) {
        e.preventDefault();
        setHelp(true);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  const newSession = async () => {
    try {
      const s = await api.createSession(DEFAULT_TITLE);
      setQuery("");
      await reload();
      location.hash = sessionHref(s.id);
      setMenu(false);
    } catch (e) {
      setError(shown(e));
    }
  };

  const act = (f: () => Promise<unknown>) => {
    f().then(reload, (e: unknown) => setError(shown(e)));
  };

  const current = sessions.find((s) => s.id === routeSession);

  return (
    <div className={`app ${menu ? "menu-open" : ""}`}>
      <header className="topbar">
        <button type="button" className="icon menu-button" aria-label={menu ? "Close the menu" : "Open the menu"} aria-expanded={menu} onClick={() => setMenu(!menu)}><Icon name="menu" size={18} /></button>
        <a className="brand" href="#/" aria-label="fleet-rlm home" data-testid="brand">
          <span className="logo" aria-hidden="true">◉</span> fleet-rlm
        </a>
        <span className="crumb">{route.page === "workbench" ? (current?.title ?? "") : route.page[0]?.toUpperCase() + route.page.slice(1)}</span>
        <span className="spacer" />
        <button type="button" className="icon" aria-label={`Theme: ${theme === "system" ? `system (${effective})` : theme}. Change theme`} title={`Theme: ${theme}`} onClick={cycle} data-testid="theme-toggle">
          <Icon name={effective === "dark" ? "moon" : "sun"} />
          {theme === "system" ? <span className="tiny">auto</span> : null}
        </button>
        <button type="button" className="icon" aria-label="Keyboard shortcuts (?)" title="Keyboard shortcuts (?)" onClick={() => setHelp(true)}><Icon name="help" /></button>
        {signedIn ? (
          <button type="button" className="icon" aria-label="Sign out (forget the API token)" title="Sign out" onClick={() => {
            setToken(null);
            setSignedIn(false);
            setAuthVersion((v) => v + 1);
            void reload();
          }}><Icon name="signOut" /></button>
        ) : null}
      </header>
      <SignInDialog open={authReason !== null} reason={authReason} onSignedIn={(token) => {
        setToken(token);
        setSignedIn(true);
        setAuthReason(null);
        setError(null);
        setAuthVersion((v) => v + 1);
        void reload();
      }} />
      <div className="layout">
        <Sidebar
          route={route}
          sessions={sessions}
          total={total}
          query={query}
          onQuery={setQuery}
          showArchived={showArchived}
          onShowArchived={setShowArchived}
          currentId={routeSession}
          onNew={() => void newSession()}
          onRename={(s, title) => act(() => api.renameSession(s.id, title))}
          onArchive={(s, archived) => act(async () => {
            await api.archiveSession(s.id, archived);
            if (archived && s.id === routeSession && !showArchived) location.hash = "#/";
          })}
          onDelete={(s) => {
            if (!confirm(`Delete the session "${s.title}" with its turns, documents and files?`)) return;
            act(async () => {
              await api.deleteSession(s.id);
              if (s.id === routeSession) location.hash = "#/";
            });
          }}
          onExport={(s) => act(() => download(api.exportUrl(s.id, "markdown"), "session.md"))}
          searchRef={search}
          onNavigate={() => setMenu(false)}
        />
        {/* Remounted on sign-in and sign-out: every page reads again with the new token. */}
        <main className="main" aria-label="Main" key={authVersion}>
          {error ? (
            <div className="banner error" role="alert">
              {error}
              <button type="button" className="icon" aria-label="Dismiss the error" onClick={() => setError(null)}><Icon name="close" /></button>
            </div>
          ) : null}
          {route.page === "workbench" ? (
            route.sessionId ? (
              <Workbench
                key={route.sessionId}
                sessionId={route.sessionId}
                step={route.step}
                importedFrom={current?.read_only ? (current.imported_from ?? "another tool's log") : null}
                onNewTurn={() => void reload()}
                settings={settings}
                onFirstMessage={(text) => {
                  // A session still called "New session" takes its name from its first question.
                  if (current?.title !== DEFAULT_TITLE) return;
                  const title = text.replace(/\s+/g, " ").trim();
                  act(() => api.renameSession(current.id, title.length > 60 ? `${title.slice(0, 59)}…` : title));
                }}
              />
            ) : (
              <div className="page welcome">
                <h1>Workbench</h1>
                <p>Chat with an agent that hands long inputs to a recursive language model, and watch every step in the execution tree.</p>
                <button type="button" className="primary" aria-label="Start a new session" onClick={() => void newSession()}><Icon name="plus" /> New session</button>
                {sessions.length ? <p className="muted">…or pick a session on the left.</p> : null}
              </div>
            )
          ) : (
            <Suspense fallback={<p className="muted page">Loading…</p>}>
            {route.page === "documents" ? (
            <DocumentsPage sessions={sessions} sessionId={docSession && sessions.some((s) => s.id === docSession) ? docSession : (sessions[0]?.id ?? null)} onSession={(id) => {
              setDocSession(id);
              localStorage.setItem(LAST_SESSION, id);
            }} />
          ) : route.page === "settings" ? (
            <SettingsPage onSaved={setSettings} />
          ) : route.page === "turns" ? (
            <Suspense fallback={<p className="muted page">Loading…</p>}>
              <TurnsPage
                filters={route.filters}
                onImported={(s) => {
                  void reload().then(() => {
                    location.hash = sessionHref(s.id);
                  });
                }}
              />
            </Suspense>
          ) : route.page === "compare" ? (
            <Suspense fallback={<p className="muted page">Loading…</p>}>
              <ComparePage a={route.a} b={route.b} />
            </Suspense>
          ) : route.page === "optimise" ? (
            <Suspense fallback={<p className="muted page">Loading…</p>}>
              <OptimisePage />
            </Suspense>
          ) : (
            <UsagePage scope={route.scope} sessions={sessions} />
          )}
            </Suspense>
          )}
        </main>
      </div>
      <HelpDialog open={help} onClose={() => setHelp(false)} />
    </div>
  );
}
