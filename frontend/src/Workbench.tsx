/* One open session: banners (reconnecting, the model not set up, the server's notices), the chat
and the execution tree side by side (tabs on a narrow screen). Esc stops the running turn. */

import { useEffect, useRef, useState } from "react";

import type { SettingsOut } from "./api/client";
import { Chat } from "./chat/Chat";
import { turnHref } from "./route";
import { useSession } from "./session/useSession";
import { TreePanel } from "./tree/TreePanel";
import { Icon } from "./ui/Icon";

export interface WorkbenchProps {
  sessionId: string;
  /** The server's settings (its model, its limits), once read. */
  settings: SettingsOut | null;
  /** The first message of the session, which can name it. */
  onFirstMessage: (text: string) => void;
  /** The turn the address names (#/s/SESSION/t/TURN), shown in the tree. */
  turnId?: string;
  /** The session gained a turn: the sidebar's counts and order change. */
  onNewTurn?: () => void;
}

export function Workbench({ sessionId, settings, onFirstMessage, turnId, onNewTurn }: WorkbenchProps) {
  const session = useSession(sessionId);
  const [selected, setSelected] = useState<string | null>(turnId ?? null);
  const [tab, setTab] = useState<"chat" | "tree">("chat");
  const { turns, loadTurn } = session;
  const latest = turns.at(-1)?.id ?? null;

  const count = turns.length;
  const known = useRef<number | null>(null);
  const { loading } = session;
  useEffect(() => {
    if (loading) return;
    if (known.current !== null && count > known.current) onNewTurn?.();
    known.current = count;
  }, [count, loading]); // eslint-disable-line react-hooks/exhaustive-deps

  // A new turn takes the tree; the reader can then pick any other. A turn the address names
  // keeps the tree when the session opens.
  const opened = useRef(false);
  useEffect(() => {
    if (latest === null) return;
    const linked = !opened.current && turnId !== undefined && turns.some((t) => t.id === turnId);
    opened.current = true;
    if (!linked) setSelected(latest);
  }, [latest]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    if (turnId) setSelected(turnId);
  }, [turnId]);
  // The address follows the turn shown: a link to it opens it.
  useEffect(() => {
    if (selected) history.replaceState(null, "", turnHref(sessionId, selected));
  }, [selected, sessionId]);
  useEffect(() => {
    if (selected) loadTurn(selected);
  }, [selected, loadTurn]);

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
    setSelected(turnId);
    setTab("tree");
  };
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
      <div className="panes">
        <Chat sessionId={sessionId} session={session} selectedTurnId={selected} onSelectTurn={select} onFirstMessage={onFirstMessage} defaultLimits={settings?.limits} />
        <TreePanel
          sessionId={sessionId}
          turns={turns}
          tree={selected ? session.trees[selected] : undefined}
          selectedTurnId={selected}
          onSelectTurn={select}
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
    </div>
  );
}
