/* One open session: banners (reconnecting, the model not set up, the server's notices), the chat
and the execution tree side by side (tabs on a narrow screen). Esc stops the running turn.
The address can name a turn, a node and a call (route.ts): the tree opens at that step. */

import { useCallback, useEffect, useRef, useState } from "react";

import type { SettingsOut } from "./api/client";
import { Chat } from "./chat/Chat";
import { sessionHref, stepHref, type Step } from "./route";
import { useSession } from "./session/useSession";
import { SessionIdContext } from "./tree/Artifacts";
import { TreePanel } from "./tree/TreePanel";
import { Icon } from "./ui/Icon";

export interface WorkbenchProps {
  sessionId: string;
  /** The server's settings (its model, its limits), once read. */
  settings: SettingsOut | null;
  /** The first message of the session, which can name it. */
  onFirstMessage: (text: string) => void;
  /** The step the address names. */
  step: Step;
  /** An imported, read-only session: the log it came from. */
  importedFrom?: string | null;
  /** The session gained a turn: the sidebar's counts and order change. */
  onNewTurn?: () => void;
}

export function Workbench({ sessionId, settings, onFirstMessage, step, importedFrom = null, onNewTurn }: WorkbenchProps) {
  const session = useSession(sessionId);
  const [latestShown, setLatestShown] = useState<string | null>(null);
  const [tab, setTab] = useState<"chat" | "tree">(step.turnId ? "tree" : "chat");
  const { turns, loadTurn } = session;
  const latest = turns.at(-1)?.id ?? null;
  const selected = step.turnId ?? latestShown;

  // A new turn takes the tree (and the address, if it named another turn); on opening, the
  // turn the address names wins.
  const seen = useRef<string | null>(null);
  useEffect(() => {
    if (latest === null || latest === seen.current) return;
    const opening = seen.current === null;
    seen.current = latest;
    setLatestShown(latest);
    if (!opening && step.turnId && step.turnId !== latest) location.replace(sessionHref(sessionId));
  }, [latest, step.turnId, sessionId]);
  useEffect(() => {
    if (selected) loadTurn(selected);
  }, [selected, loadTurn]);
  const count = turns.length;
  const known = useRef<number | null>(null);
  const { loading } = session;
  useEffect(() => {
    if (loading) return;
    if (known.current !== null && count > known.current) onNewTurn?.();
    known.current = count;
  }, [count, loading]); // eslint-disable-line react-hooks/exhaustive-deps

  const { liveTurnId, cancel } = session;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape" && liveTurnId && !document.querySelector("dialog[open]")) {
        e.preventDefault();
        cancel();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [liveTurnId, cancel]);

  const select = (turnId: string) => {
    location.hash = stepHref(sessionId, { turnId });
    setTab("tree");
  };
  const onStep = useCallback(
    (at: Pick<Step, "nodeId" | "callId">) => {
      if (selected) location.hash = stepHref(sessionId, { turnId: selected, ...at });
    },
    [sessionId, selected],
  );
  const notConfigured = settings !== null && !settings.model_ready;
  const lastErrors = latest ? session.trees[latest]?.errors ?? [] : [];
  const authFailure = lastErrors.some((e) => /auth|api.?key|not.?configured|credential/i.test(`${e.error_type} ${e.message}`));

  return (
    <div className={`workbench tab-${tab}`}>
      <div className="banners">
        {session.socketState === "reconnecting" ? (
          <div className="banner warn" role="status" data-testid="banner-reconnecting">
            Disconnected from the server — reconnecting{session.reconnectAttempt > 1 ? ` (attempt ${session.reconnectAttempt})` : ""}… The turn goes on; its events resume from where they stopped.
          </div>
        ) : null}
        {notConfigured || authFailure ? (
          <div className="banner warn" role="status" data-testid="banner-model">
            <span>
              {authFailure
                ? "The model rejected the request: check its API key."
                : `No API key or endpoint is set for ${settings?.root_model ?? "the model"}${settings?.provider_keys.length ? `, and the server has no ${settings.provider_keys.join(" or ")} in its environment` : ""}.`}{" "}
              <a href="#/settings">Open Settings</a> to set one and test it.
            </span>
          </div>
        ) : null}
        {session.notice ? (
          <div className="banner error" role="alert" data-testid="banner-notice">
            {session.notice.message}
            <button type="button" className="icon" aria-label="Dismiss the message" onClick={session.dismissNotice}><Icon name="close" /></button>
          </div>
        ) : null}
      </div>
      <div className="tabs" role="tablist" aria-label="Workbench view">
        <button type="button" role="tab" aria-selected={tab === "chat"} aria-label="Show chat" onClick={() => setTab("chat")}>Chat</button>
        <button type="button" role="tab" aria-selected={tab === "tree"} aria-label="Show execution tree" onClick={() => setTab("tree")}>Tree</button>
      </div>
      <SessionIdContext.Provider value={sessionId}>
      <div className="panes">
        <Chat sessionId={sessionId} session={session} selectedTurnId={selected} onSelectTurn={select} onFirstMessage={onFirstMessage} defaultLimits={settings?.limits} defaultModels={settings ? { root: settings.root_model, sub: settings.sub_model } : undefined} importedFrom={importedFrom} />
        <TreePanel
          sessionId={sessionId}
          turns={turns}
          tree={selected ? session.trees[selected] : undefined}
          selectedTurnId={selected}
          onSelectTurn={select}
          step={step}
          onStep={onStep}
          limits={
            settings
              ? {
                  max_calls: settings.limits.max_calls,
                  max_tokens: settings.limits.max_tokens,
                  max_usd: settings.limits.max_usd,
                  max_wall_s: settings.limits.max_wall_s,
                }
              : undefined
          }
        />
      </div>
      </SessionIdContext.Provider>
    </div>
  );
}
