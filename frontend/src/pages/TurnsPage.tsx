/* Every turn across sessions, searched and filtered by the server (GET /turns): the text of the
question or answer, status, model, cost, duration, date and tags; sortable columns. The search
lives in the address, so it is a link; each turn links to its step in the workbench; two ticked
turns open in Compare. A reference implementation's log (alexzhang13/rlm) imports from here as
a read-only session. */

import { useEffect, useRef, useState, type FormEvent } from "react";

import { api, errorText, type Session, type TurnSummary } from "../api/client";
import { compareHref, stepHref, turnsHref, TURN_FILTERS, type TurnFilterName, type TurnFilters } from "../route";
import { StatusChip } from "../tree/TreeView";
import { clip, fmtDate, fmtSeconds, fmtUsd } from "../ui/format";
import "../trace/trace.css";

const STATUSES = ["running", "waiting", "ok", "budget", "cancelled", "error", "interrupted"] as const;

/** Sortable columns and the server's name for each. */
const COLUMNS: { key: string; label: string; sort: string | null }[] = [
  { key: "started", label: "Started", sort: "started_at" },
  { key: "question", label: "Question", sort: null },
  { key: "session", label: "Session", sort: null },
  { key: "status", label: "Status", sort: "status" },
  { key: "models", label: "Models", sort: null },
  { key: "cost", label: "Cost", sort: "cost_usd" },
  { key: "calls", label: "Calls", sort: "calls" },
  { key: "duration", label: "Duration", sort: "duration_s" },
  { key: "tags", label: "Tags", sort: null },
];

function Tags({ turn, onSaved }: { turn: TurnSummary; onSaved: (tags: string[]) => void }) {
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const save = () => {
    const tags = [...new Set((editing ?? "").split(",").map((t) => t.trim()).filter(Boolean))];
    api.setTurnTags(turn.turn_id, tags).then(
      () => {
        onSaved(tags);
        setEditing(null);
        setError(null);
      },
      (e: unknown) => setError(errorText(e)),
    );
  };
  if (editing !== null) {
    return (
      <span>
        <input
          aria-label={`Tags of turn ${turn.turn_id}, separated by commas`}
          value={editing}
          autoFocus
          onChange={(e) => setEditing(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") save();
            if (e.key === "Escape") setEditing(null);
          }}
        />
        {error ? <span className="error-text tiny" role="alert">{error}</span> : null}
      </span>
    );
  }
  return (
    <span>
      {turn.tags.map((t) => (
        <a key={t} className="tag" href={turnsHref({ tag: t })}>{t}</a>
      ))}
      <button type="button" className="link-button" aria-label={`Edit the tags of turn ${turn.turn_id}`} onClick={() => setEditing(turn.tags.join(", "))}>
        edit
      </button>
    </span>
  );
}

function ImportLog({ onImported }: { onImported: (session: Session) => void }) {
  const input = useRef<HTMLInputElement>(null);
  const [state, setState] = useState<{ busy: boolean; error: string | null }>({ busy: false, error: null });
  const upload = (file: File) => {
    setState({ busy: true, error: null });
    api.importRlmLog(file).then(
      (session) => {
        setState({ busy: false, error: null });
        onImported(session);
      },
      (e: unknown) => setState({ busy: false, error: errorText(e) }),
    );
  };
  return (
    <span className="import-log">
      <input
        ref={input}
        type="file"
        accept=".jsonl,.json,application/x-ndjson,application/json"
        hidden
        aria-label="An RLM trajectory log to import"
        data-testid="import-log-input"
        onChange={(e) => {
          const file = e.target.files?.[0];
          e.target.value = "";
          if (file) upload(file);
        }}
      />
      <button type="button" aria-label="Import an RLM trajectory log" disabled={state.busy} onClick={() => input.current?.click()}>
        {state.busy ? "Importing…" : "Import an RLM log"}
      </button>
      {state.error ? (
        <span className="banner error" role="alert" data-testid="import-error">
          The log was not imported: {state.error}
        </span>
      ) : null}
    </span>
  );
}

export function TurnsPage({ filters, onImported }: { filters: TurnFilters; onImported: (session: Session) => void }) {
  const [draft, setDraft] = useState<TurnFilters>(filters);
  const [items, setItems] = useState<TurnSummary[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [picked, setPicked] = useState<string[]>([]);

  useEffect(() => {
    setDraft(filters);
    setError(null);
    let live = true;
    api.searchTurns(filters).then(
      (page) => {
        if (!live) return;
        setItems(page.items);
        setNext(page.next_cursor);
      },
      (e: unknown) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [filters]);

  const more = () => {
    if (!next) return;
    api.searchTurns(filters, 50, next).then(
      (page) => {
        setItems((old) => [...(old ?? []), ...page.items]);
        setNext(page.next_cursor);
      },
      (e: unknown) => setError(errorText(e)),
    );
  };

  const submit = (e: FormEvent) => {
    e.preventDefault();
    location.hash = turnsHref(draft);
  };
  const set = (name: TurnFilterName) => (e: { target: { value: string } }) => setDraft({ ...draft, [name]: e.target.value });
  const sortBy = (sort: string) => {
    const order = filters.sort === sort && filters.order !== "asc" ? "asc" : "desc";
    location.hash = turnsHref({ ...filters, sort, order });
  };
  const pick = (id: string, on: boolean) => setPicked((old) => (on ? [...old.filter((x) => x !== id), id].slice(-2) : old.filter((x) => x !== id)));
  const active = TURN_FILTERS.some((n) => n !== "sort" && n !== "order" && filters[n]);

  return (
    <div className="page turns-page">
      <div className="page-head">
        <h1>Turns</h1>
        <ImportLog onImported={onImported} />
      </div>
      <form className="filters" role="search" aria-label="Search turns" onSubmit={submit}>
        <label>
          Text
          <input type="search" aria-label="Text of the question or answer" value={draft.q ?? ""} onChange={set("q")} />
        </label>
        <label>
          Status
          <select aria-label="Status" value={draft.status ?? ""} onChange={set("status")}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Model
          <input aria-label="Model" value={draft.model ?? ""} onChange={set("model")} placeholder="openai/…" />
        </label>
        <label>
          Cost from $
          <input aria-label="Lowest cost in dollars" type="number" min={0} step="any" value={draft.min_cost ?? ""} onChange={set("min_cost")} />
        </label>
        <label>
          to $
          <input aria-label="Highest cost in dollars" type="number" min={0} step="any" value={draft.max_cost ?? ""} onChange={set("max_cost")} />
        </label>
        <label>
          Duration from s
          <input aria-label="Shortest duration in seconds" type="number" min={0} step="any" value={draft.min_duration_s ?? ""} onChange={set("min_duration_s")} />
        </label>
        <label>
          to s
          <input aria-label="Longest duration in seconds" type="number" min={0} step="any" value={draft.max_duration_s ?? ""} onChange={set("max_duration_s")} />
        </label>
        <label>
          Since
          <input aria-label="Started since" type="date" value={draft.since ?? ""} onChange={set("since")} />
        </label>
        <label>
          Until
          <input aria-label="Started until" type="date" value={draft.until ?? ""} onChange={set("until")} />
        </label>
        <label>
          Tag
          <input aria-label="Tag" value={draft.tag ?? ""} onChange={set("tag")} />
        </label>
        <button type="submit" className="primary" aria-label="Search turns">Search</button>
        {active ? <a href={turnsHref({ sort: filters.sort, order: filters.order })}>Clear</a> : null}
        <span className="spacer" />
        <button
          type="button"
          disabled={picked.length !== 2}
          aria-label="Compare the two ticked turns"
          onClick={() => {
            // The older turn on the left.
            const [a, b] = (items ?? []).filter((t) => picked.includes(t.turn_id)).sort((x, y) => x.started_at.localeCompare(y.started_at));
            if (a && b) location.hash = compareHref(a.turn_id, b.turn_id);
          }}
        >
          Compare {picked.length}/2
        </button>
      </form>
      {error ? <div className="banner error" role="alert">{error}</div> : null}
      {items === null ? (
        !error ? <p className="muted">Loading…</p> : null
      ) : items.length === 0 ? (
        <p className="muted">No turn matches.</p>
      ) : (
        <table className="table" aria-label="Turns">
          <thead>
            <tr>
              <th scope="col"><span className="sr-only">Compare</span></th>
              {COLUMNS.map((c) => (
                <th key={c.key} scope="col" aria-sort={c.sort && filters.sort === c.sort ? (filters.order === "asc" ? "ascending" : "descending") : undefined}>
                  {c.sort ? (
                    <button type="button" className="sort-button" aria-label={`Sort by ${c.label.toLowerCase()}`} onClick={() => sortBy(c.sort as string)}>
                      {c.label}
                      {filters.sort === c.sort ? (filters.order === "asc" ? " ▲" : " ▼") : ""}
                    </button>
                  ) : (
                    c.label
                  )}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {items.map((t) => (
              <tr key={t.turn_id} data-testid="turn-row" data-turn-id={t.turn_id}>
                <td>
                  <input type="checkbox" aria-label={`Pick turn ${t.turn_id} to compare`} checked={picked.includes(t.turn_id)} onChange={(e) => pick(t.turn_id, e.target.checked)} />
                </td>
                <td>{fmtDate(t.started_at)}</td>
                <td>
                  <a href={stepHref(t.session_id, { turnId: t.turn_id })} title={t.question}>{clip(t.question || "…", 80)}</a>
                  {t.answer ? <div className="muted tiny">{clip(t.answer, 100)}</div> : null}
                </td>
                <td>{clip(t.session_title, 30)}</td>
                <td><StatusChip status={t.status} /></td>
                <td className="tiny">{t.models.join(", ")}</td>
                <td>{t.cost_usd === null ? "$ n/a" : fmtUsd(t.cost_usd)}</td>
                <td>{t.calls}</td>
                <td>{t.duration_s === null ? "—" : fmtSeconds(t.duration_s)}</td>
                <td>
                  <Tags turn={t} onSaved={(tags) => setItems((old) => (old ?? []).map((x) => (x.turn_id === t.turn_id ? { ...x, tags } : x)))} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next ? <button type="button" aria-label="Load more turns" onClick={more}>More turns</button> : null}
    </div>
  );
}

export default TurnsPage;
