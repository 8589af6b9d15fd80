/* Calls, tokens and cost per model and role (agent, root, sub, extract, summary) for one turn,
one session or a date range (GET /usage/models). The scope is in the address (#/usage?turn=…). */

import { useEffect, useState } from "react";

import { api, errorText, type ModelUsageReport, type Session } from "../api/client";
import { usageHref, type UsageScope } from "../route";
import { fmtUsd } from "../ui/format";

const KINDS = [
  { kind: "range", label: "Dates" },
  { kind: "session", label: "Session" },
  { kind: "turn", label: "Turn" },
] as const;

type Range = Extract<UsageScope, { kind: "range" }>;

/** A range open at both ends reads the last 30 days (the server takes exactly one scope). */
function bounded(range: Range): Range {
  if (range.since || range.until) return range;
  return { ...range, since: new Date(Date.now() - 30 * 86_400_000).toISOString().slice(0, 10) };
}

function effective(scope: UsageScope): UsageScope {
  return scope.kind === "range" ? bounded(scope) : scope;
}

function go(scope: UsageScope) {
  location.hash = usageHref(scope);
}

export function ModelUsage({ scope, sessions }: { scope: UsageScope; sessions: readonly Session[] }) {
  const [report, setReport] = useState<ModelUsageReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [turnDraft, setTurnDraft] = useState(scope.kind === "turn" ? scope.turnId : "");

  useEffect(() => {
    let live = true;
    setError(null);
    api.usageByModel(effective(scope)).then(
      (r) => live && setReport(r),
      (e: unknown) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [scope]);

  const rows = report?.rows ?? [];
  const total = rows.reduce(
    (t, r) => ({
      calls: t.calls + r.calls,
      prompt: t.prompt + r.prompt_tokens,
      completion: t.completion + r.completion_tokens,
      usd: t.usd + r.cost_usd,
      unpriced: t.unpriced + r.unpriced_calls,
    }),
    { calls: 0, prompt: 0, completion: 0, usd: 0, unpriced: 0 },
  );

  return (
    <section className="card model-usage" aria-label="Usage by model">
      <div className="card-head">
        <h2>By model and role</h2>
      </div>
      <div className="toolbar">
        <div role="radiogroup" aria-label="Usage of" className="segmented">
          {KINDS.map((k) => (
            <button
              key={k.kind}
              type="button"
              role="radio"
              aria-checked={scope.kind === k.kind}
              aria-label={`Usage by model for ${k.label === "Dates" ? "a date range" : `a ${k.label.toLowerCase()}`}`}
              onClick={() => {
                if (k.kind === "range") go({ kind: "range", since: "", until: "" });
                else if (k.kind === "session" && sessions[0]) go({ kind: "session", sessionId: sessions[0].id });
                else if (k.kind === "turn") go({ kind: "turn", turnId: turnDraft });
              }}
            >
              {k.label}
            </button>
          ))}
        </div>
        {scope.kind === "range" ? (
          <>
            <label>
              Since <input type="date" aria-label="Usage since" value={bounded(scope).since} onChange={(e) => go({ ...scope, since: e.target.value })} />
            </label>
            <label>
              Until <input type="date" aria-label="Usage until" value={scope.until} onChange={(e) => go({ ...scope, until: e.target.value })} />
            </label>
          </>
        ) : scope.kind === "session" ? (
          <select aria-label="Session" value={scope.sessionId} onChange={(e) => go({ kind: "session", sessionId: e.target.value })}>
            {sessions.some((s) => s.id === scope.sessionId) ? null : <option value={scope.sessionId}>{scope.sessionId}</option>}
            {sessions.map((s) => (
              <option key={s.id} value={s.id}>{s.title}</option>
            ))}
          </select>
        ) : (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              go({ kind: "turn", turnId: turnDraft.trim() });
            }}
          >
            <input aria-label="Turn id" value={turnDraft} onChange={(e) => setTurnDraft(e.target.value)} placeholder="turn id" />
          </form>
        )}
      </div>
      {error ? <div className="banner error" role="alert">{error}</div> : null}
      {report ? (
        rows.length ? (
          <table className="table" aria-label="Usage by model and role">
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Role</th>
                <th scope="col">Calls</th>
                <th scope="col">Prompt tokens</th>
                <th scope="col">Completion tokens</th>
                <th scope="col">Cost</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((r) => (
                <tr key={`${r.model} ${r.role}`} data-testid="model-usage-row" data-model={r.model} data-role={r.role}>
                  <td>{r.model}</td>
                  <td>{r.role}</td>
                  <td>{r.calls}</td>
                  <td>{r.prompt_tokens.toLocaleString()}</td>
                  <td>{r.completion_tokens.toLocaleString()}</td>
                  <td>{fmtUsd(r.cost_usd, r.unpriced_calls)}</td>
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                <th scope="row" colSpan={2}>Total</th>
                <td>{total.calls}</td>
                <td>{total.prompt.toLocaleString()}</td>
                <td>{total.completion.toLocaleString()}</td>
                <td>{fmtUsd(total.usd, total.unpriced)}</td>
              </tr>
            </tfoot>
          </table>
        ) : (
          <p className="muted">No model calls in this scope.</p>
        )
      ) : !error ? (
        <p className="muted">Loading…</p>
      ) : null}
    </section>
  );
}
