/* Tokens and cost per session or per day, as a table and a hand-drawn SVG bar chart; calls,
tokens and cost per model and role for a turn, a session or a date range (ModelUsage). */

import { useEffect, useState } from "react";

import { api, errorText, type Session, type UsageReport, type UsageRow } from "../api/client";
import { sessionHref, usageHref, type UsageScope } from "../route";
import { ModelUsage } from "./ModelUsage";
import { fmtTokens, fmtUsd } from "../ui/format";

type Metric = "tokens" | "usd";

function label(row: UsageRow, group: "session" | "day"): string {
  return group === "session" ? (row.title ?? row.key) : row.key;
}

export function BarChart({ rows, group, metric }: { rows: UsageRow[]; group: "session" | "day"; metric: Metric }) {
  const shown = group === "day" ? [...rows].reverse().slice(-30) : [...rows].sort((a, b) => b[metric] - a[metric]).slice(0, 20);
  const max = Math.max(...shown.map((r) => r[metric]), metric === "usd" ? 0.0001 : 1);
  const barW = 28;
  const gap = 10;
  const height = 180;
  const top = 18;
  // Room for the value axis's labels on the left and the slanted names below (12 characters
  // at -35°), so no label is cut off at the chart's edge.
  const left = 64;
  const bottom = 78;
  const width = Math.max(320, shown.length * (barW + gap) + gap + left);
  const fmt = metric === "usd" ? (n: number) => fmtUsd(n) : fmtTokens;
  return (
    <svg className="chart" role="img" aria-label={`${metric === "usd" ? "Cost" : "Tokens"} per ${group}`} viewBox={`0 0 ${width} ${height + top + bottom}`} width={width} height={height + top + bottom}>
      {[0, 0.5, 1].map((f) => (
        <g key={f}>
          <line x1={left - 4} x2={width} y1={top + height * (1 - f)} y2={top + height * (1 - f)} className="grid-line" />
          <text x={left - 8} y={top + height * (1 - f) + 4} className="axis" textAnchor="end">
            {fmt(max * f)}
          </text>
        </g>
      ))}
      {shown.map((r, i) => {
        const h = (r[metric] / max) * height;
        const x = left + gap + i * (barW + gap);
        const name = label(r, group);
        return (
          <g key={r.key}>
            <rect x={x} y={top + height - h} width={barW} height={Math.max(h, r[metric] > 0 ? 1 : 0)} rx={3} className="bar">
              <title>{`${name}: ${fmt(r[metric])}`}</title>
            </rect>
            <text x={x + barW / 2} y={top + height + 14} className="axis" textAnchor="end" transform={`rotate(-35 ${x + barW / 2} ${top + height + 14})`}>
              {name.length > 12 ? `${name.slice(0, 11)}…` : name}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

export function UsagePage({ scope, sessions }: { scope: UsageScope; sessions: readonly Session[] }) {
  const [group, setGroup] = useState<"session" | "day">("session");
  const [metric, setMetric] = useState<Metric>("tokens");
  const [report, setReport] = useState<UsageReport | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    setError(null);
    api
      .usage(group)
      .then(setReport)
      .catch((e: unknown) => setError(errorText(e)));
  }, [group]);

  return (
    <div className="page usage-page">
      <h1>Usage</h1>
      <ModelUsage key={usageHref(scope)} scope={scope} sessions={sessions} />
      <div className="toolbar">
        <div role="radiogroup" aria-label="Group usage by" className="segmented">
          {(["session", "day"] as const).map((g) => (
            <button key={g} type="button" role="radio" aria-checked={group === g} aria-label={`Per ${g}`} onClick={() => setGroup(g)}>
              Per {g}
            </button>
          ))}
        </div>
        <div role="radiogroup" aria-label="Chart metric" className="segmented">
          {(["tokens", "usd"] as const).map((m) => (
            <button key={m} type="button" role="radio" aria-checked={metric === m} aria-label={`Chart ${m === "usd" ? "cost" : "tokens"}`} onClick={() => setMetric(m)}>
              {m === "usd" ? "Cost" : "Tokens"}
            </button>
          ))}
        </div>
      </div>
      {error ? <div className="banner error" role="alert">{error}</div> : null}
      {report ? (
        report.items.length ? (
          <>
            <div className="card">
              <BarChart rows={report.items} group={report.group} metric={metric} />
            </div>
            <table className="table" aria-label={`Usage per ${report.group}`}>
              <thead>
                <tr>
                  <th scope="col">{report.group === "session" ? "Session" : "Day (UTC)"}</th>
                  <th scope="col">Turns</th>
                  <th scope="col">Calls</th>
                  <th scope="col">Prompt tokens</th>
                  <th scope="col">Completion tokens</th>
                  <th scope="col">Cost</th>
                </tr>
              </thead>
              <tbody>
                {report.items.map((r) => (
                  <tr key={r.key}>
                    <td>{report.group === "session" ? <a href={sessionHref(r.key)}>{label(r, "session")}</a> : r.key}</td>
                    <td>{r.turns}</td>
                    <td>{r.calls}</td>
                    <td>{r.prompt_tokens.toLocaleString()}</td>
                    <td>{r.completion_tokens.toLocaleString()}</td>
                    <td title={r.usd_unknown_calls ? `${r.usd_unknown_calls} calls of models without a known price` : undefined}>{fmtUsd(r.usd, r.usd_unknown_calls)}</td>
                  </tr>
                ))}
              </tbody>
              <tfoot>
                <tr>
                  <th scope="row">Total</th>
                  <td>{report.total.turns}</td>
                  <td>{report.total.calls}</td>
                  <td>{report.total.prompt_tokens.toLocaleString()}</td>
                  <td>{report.total.completion_tokens.toLocaleString()}</td>
                  <td>{fmtUsd(report.total.usd, report.total.usd_unknown_calls)}</td>
                </tr>
              </tfoot>
            </table>
          </>
        ) : (
          <p className="muted">No finished turns yet.</p>
        )
      ) : !error ? (
        <p className="muted">Loading…</p>
      ) : null}
    </div>
  );
}
