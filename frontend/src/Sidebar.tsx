/* Sessions: new, search (Ctrl/Cmd+K), rename, archive, export, delete; and the app's pages. */

import { useEffect, useRef, useState, type RefObject } from "react";

import type { Session } from "./api/client";
import type { Route } from "./route";
import { fmtWhen } from "./ui/format";
import { Icon } from "./ui/Icon";

export interface SidebarProps {
  route: Route;
  sessions: Session[];
  total: number;
  query: string;
  onQuery: (q: string) => void;
  showArchived: boolean;
  onShowArchived: (v: boolean) => void;
  currentId: string | null;
  onNew: () => void;
  onRename: (s: Session, title: string) => void;
  onArchive: (s: Session, archived: boolean) => void;
  onDelete: (s: Session) => void;
  onExport: (s: Session) => void;
  searchRef: RefObject<HTMLInputElement | null>;
  onNavigate: () => void;
}

const PAGES: { page: Route["page"]; label: string; href: string }[] = [
  { page: "workbench", label: "Workbench", href: "#/" },
  { page: "turns", label: "Turns", href: "#/turns" },
  { page: "documents", label: "Documents", href: "#/documents" },
  { page: "usage", label: "Usage", href: "#/usage" },
  { page: "optimise", label: "Optimise", href: "#/optimise" },
  { page: "settings", label: "Settings", href: "#/settings" },
];

function SessionItem({ s, current, onRename, onArchive, onDelete, onExport, onNavigate }: { s: Session; current: boolean; onRename: (t: string) => void; onArchive: () => void; onDelete: () => void; onExport: () => void; onNavigate: () => void }) {
  const [editing, setEditing] = useState(false);
  const [title, setTitle] = useState(s.title);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (editing) input.current?.select();
  }, [editing]);
  const commit = () => {
    setEditing(false);
    if (title.trim() && title.trim() !== s.title) onRename(title.trim());
    else setTitle(s.title);
  };
  return (
    <li className={`session ${current ? "current" : ""} ${s.archived ? "archived" : ""}`} data-testid="session-item" data-session-id={s.id}>
      {editing ? (
        <input
          ref={input}
          className="rename"
          aria-label={`New title for ${s.title}`}
          value={title}
          onChange={(e) => setTitle(e.target.value)}
          onBlur={commit}
          onKeyDown={(e) => {
            if (e.key === "Enter") commit();
            if (e.key === "Escape") {
              e.stopPropagation();
              setTitle(s.title);
              setEditing(false);
            }
          }}
        />
      ) : (
        <a className="session-link" href={`#/s/${s.id}`} aria-current={current ? "page" : undefined} aria-label={`Open session ${s.title}`} onClick={onNavigate} onDoubleClick={() => setEditing(true)}>
          <span className="session-title">{s.title}</span>
          {s.archived ? <span className="chip">archived</span> : null}
          <span className="session-meta muted" data-testid="session-meta">
            {fmtWhen(s.updated_at)}
            {s.turns != null ? ` · ${s.turns} turn${s.turns === 1 ? "" : "s"}` : ""}
          </span>
        </a>
      )}
      <span className="session-actions">
        <button type="button" className="icon" aria-label={`Rename session ${s.title}`} title="Rename" onClick={() => setEditing(true)}>
          <Icon name="edit" size={14} />
        </button>
        <button type="button" className="icon" aria-label={`${s.archived ? "Unarchive" : "Archive"} session ${s.title}`} title={s.archived ? "Unarchive" : "Archive"} onClick={onArchive}>
          <Icon name={s.archived ? "unarchive" : "archive"} size={14} />
        </button>
        <button type="button" className="icon" aria-label={`Export session ${s.title} as Markdown`} title="Export as Markdown" onClick={onExport}>
          <Icon name="download" size={14} />
        </button>
        <button type="button" className="icon danger" aria-label={`Delete session ${s.title}`} title="Delete" onClick={onDelete}>
          <Icon name="trash" size={14} />
        </button>
      </span>
    </li>
  );
}

export function Sidebar(p: SidebarProps) {
  const mod = /Mac|iPhone|iPad/.test(navigator.platform) ? "⌘" : "Ctrl";
  return (
    <nav className="sidebar" aria-label="Sessions and pages">
      <ul className="pages">
        {PAGES.map((x) => (
          <li key={x.page}>
            <a href={x.href} aria-current={p.route.page === x.page ? "page" : undefined} aria-label={x.label} onClick={p.onNavigate}>
              {x.label}
            </a>
          </li>
        ))}
      </ul>
      <button type="button" className="primary new-session" aria-label="New session" onClick={p.onNew}>
        <Icon name="plus" /> New session
      </button>
      <div className="search">
        <input ref={p.searchRef} type="search" aria-label={`Search sessions (${mod}+K)`} placeholder={`Search  ${mod}+K`} value={p.query} onChange={(e) => p.onQuery(e.target.value)} />
      </div>
      <label className="toggle">
        <input type="checkbox" aria-label="Show archived sessions" checked={p.showArchived} onChange={(e) => p.onShowArchived(e.target.checked)} /> Show archived
      </label>
      <ul className="sessions" aria-label="Sessions">
        {p.sessions.map((s) => (
          <SessionItem
            key={s.id}
            s={s}
            current={s.id === p.currentId}
            onRename={(t) => p.onRename(s, t)}
            onArchive={() => p.onArchive(s, !s.archived)}
            onDelete={() => p.onDelete(s)}
            onExport={() => p.onExport(s)}
            onNavigate={p.onNavigate}
          />
        ))}
        {!p.sessions.length ? <li className="muted empty">{p.query ? "No session matches." : "No sessions yet."}</li> : null}
      </ul>
      {p.total > p.sessions.length ? <div className="muted small">{p.sessions.length} of {p.total} shown</div> : null}
    </nav>
  );
}
