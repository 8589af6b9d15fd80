/* Optimise: the tenant's datasets and program versions (made by `fleet optimize run`), each with
its validation scores before and after, its score curve, its cost and its prompt diff; an admin
promotes a version (new turns run it) or rolls the promotion back. */

import { useCallback, useEffect, useState } from "react";

import { api, errorText, type DatasetInfo, type OptimisationRun, type ProgramVersion, type Programs } from "../api/client";
import { fmtUsd } from "../ui/format";

type Target = "agent" | "rlm";
const TARGETS: { target: Target; label: string }[] = [
  { target: "agent", label: "Chat agent" },
  { target: "rlm", label: "Recursive engine" },
];

export function versionLabel(v: Pick<ProgramVersion, "target" | "number">): string {
  return `${v.target}:${v.number}`;
}

/** The diff's lines, each marked as added, removed, a file header or context. */
export function diffLines(diff: string): { kind: "add" | "del" | "head" | "same"; text: string }[] {
  return diff.split("\n").filter((line) => line.length > 0).map((text) => {
    if (text.startsWith("+++") || text.startsWith("---") || text.startsWith("@@")) return { kind: "head", text };
    if (text.startsWith("+")) return { kind: "add", text };
    if (text.startsWith("-")) return { kind: "del", text };
    return { kind: "same", text };
  });
}

function Curve({ points }: { points: { score?: number }[] }) {
  const scores = points.map((p) => p.score ?? 0);
  if (scores.length < 2) return null;
  const width = 160;
  const height = 36;
  const step = width / (scores.length - 1);
  const path = scores.map((s, i) => `${i === 0 ? "M" : "L"}${(i * step).toFixed(1)},${(height - s * height).toFixed(1)}`).join(" ");
  return (
    <svg className="score-curve" role="img" aria-label="Validation score of each candidate" width={width} height={height} viewBox={`0 0 ${width} ${height}`}>
      <path d={path} fill="none" stroke="currentColor" strokeWidth={1.5} />
    </svg>
  );
}

function Version({ v, onPromote }: { v: ProgramVersion; onPromote: () => void }) {
  const [open, setOpen] = useState(false);
  const usd = typeof v.usage?.usd === "number" ? v.usage.usd : null;
  return (
    <li className="program-version" data-testid={`version-${versionLabel(v)}`}>
      <div className="version-head">
        <strong>{versionLabel(v)}</strong>
        {v.promoted ? <span className="badge ok-text">promoted</span> : null}
        {!v.compatible ? <span className="badge warn-text" title="Optimised on another release of the program">other release</span> : null}
        <span>dataset {v.dataset}, metric {v.metric}</span>
        <span aria-label="Validation scores">
          validation {v.score_before.toFixed(3)} → {v.score_after.toFixed(3)}
        </span>
        {usd !== null ? <span>cost {fmtUsd(usd)}</span> : null}
        {v.stopped ? <span className="warn-text">stopped early: {v.stopped}</span> : null}
        <Curve points={v.curve} />
        <button type="button" aria-expanded={open} onClick={() => setOpen(!open)}>{open ? "Hide prompt diff" : "Prompt diff"}</button>
        {!v.promoted && v.compatible ? (
          <button type="button" className="primary" aria-label={`Promote ${versionLabel(v)}`} onClick={onPromote}>Promote</button>
        ) : null}
      </div>
      {open ? (
        <pre className="prompt-diff" aria-label={`Prompt diff of ${versionLabel(v)}`}>
          {diffLines(v.prompt_diff).map((line, i) => (
            <div key={i} className={`diff-${line.kind}`}>{line.text}</div>
          ))}
        </pre>
      ) : null}
    </li>
  );
}

function NewRun({ datasets, onStarted }: { datasets: DatasetInfo[]; onStarted: (run: OptimisationRun) => void }) {
  const [target, setTarget] = useState<Target>("agent");
  const [dataset, setDataset] = useState("");
  const [maxCalls, setMaxCalls] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const chosen = dataset || datasets[0]?.name || "";
  if (!datasets.length) return null;
  return (
    <form
      className="new-run"
      aria-label="Start an optimisation run"
      onSubmit={(e) => {
        e.preventDefault();
        setProblem(null);
        api
          .startRun({ target, dataset: chosen, limits: maxCalls ? { max_calls: Number(maxCalls) } : null })
          .then(onStarted, (err: unknown) => setProblem(errorText(err)));
      }}
    >
      <label>
        Program{" "}
        <select aria-label="Program to optimise" value={target} onChange={(e) => setTarget(e.target.value as Target)}>
          {TARGETS.map((t) => <option key={t.target} value={t.target}>{t.label}</option>)}
        </select>
      </label>
      <label>
        Dataset{" "}
        <select aria-label="Dataset" value={chosen} onChange={(e) => setDataset(e.target.value)}>
          {datasets.map((d) => <option key={d.name} value={d.name}>{d.name}</option>)}
        </select>
      </label>
      <label>
        Most model calls{" "}
        <input aria-label="Most model calls" type="number" min={1} placeholder="a turn's" value={maxCalls} onChange={(e) => setMaxCalls(e.target.value)} />
      </label>
      <button type="submit" className="primary">Optimise</button>
      {problem ? <p className="warn-text" role="alert">{problem}</p> : null}
    </form>
  );
}

function Runs({ runs }: { runs: OptimisationRun[] }) {
  if (!runs.length) return null;
  return (
    <ul className="optimisation-runs" aria-label="Optimisation runs">
      {runs.map((r) => {
        const best = Math.max(0, ...r.curve.map((p) => (typeof p.score === "number" ? p.score : 0)));
        return (
          <li key={r.id} data-testid="optimisation-run" data-state={r.state}>
            <strong>{r.target}</strong> on {r.dataset} ({r.metric}): {r.state}, {r.metric_calls} program runs, best validation {best.toFixed(3)}
            <Curve points={r.curve} />
            {r.error ? <span className="error-text"> {r.error}</span> : null}
          </li>
        );
      })}
    </ul>
  );
}

export function OptimisePage() {
  const [datasets, setDatasets] = useState<DatasetInfo[]>([]);
  const [programs, setPrograms] = useState<Programs | null>(null);
  const [runs, setRuns] = useState<OptimisationRun[]>([]);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(() => {
    Promise.all([api.datasets(), api.programs(), api.runs()]).then(([d, p, r]) => {
      setDatasets(d);
      setPrograms(p);
      setRuns(r);
      setError(null);
    }, (e: unknown) => setError(errorText(e)));
  }, []);

  useEffect(load, [load]);

  // While a run is under way its progress is polled; when it ends its version appears.
  const running = runs.some((r) => r.state === "running");
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(load, 1000);
    return () => clearInterval(timer);
  }, [running, load]);

  const act = (call: Promise<Programs>) => {
    call.then((p) => {
      setPrograms(p);
      setError(null);
    }, (e: unknown) => setError(errorText(e)));
  };

  return (
    <div className="page optimise-page">
      <h1>Optimise</h1>
      <p className="muted">
        Datasets come from feedback on turns, JSONL files and benchmark results (<code>fleet optimize dataset create</code>). A run (here, within one turn's budget, or <code>fleet optimize run agent|rlm --dataset NAME</code>) improves a program with GEPA and saves a version; new turns run the promoted one.
      </p>
      {error ? <p className="warn-text" role="alert">{error}</p> : null}
      <section aria-label="Runs">
        <h2>Runs</h2>
        <NewRun datasets={datasets} onStarted={(run) => setRuns([run, ...runs])} />
        <Runs runs={runs} />
      </section>
      <section aria-label="Datasets">
        <h2>Datasets</h2>
        {datasets.length ? (
          <table>
            <thead>
              <tr><th>Name</th><th>Source</th><th>Examples</th><th>Created</th></tr>
            </thead>
            <tbody>
              {datasets.map((d) => (
                <tr key={d.name}>
                  <td>{d.name}</td>
                  <td>{d.benchmark ? `${d.source} (${d.benchmark})` : d.source}</td>
                  <td>{d.examples}</td>
                  <td>{new Date(d.created_at).toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p className="muted">No datasets yet: <code>fleet optimize dataset create NAME --feedback</code>.</p>
        )}
      </section>
      {TARGETS.map(({ target, label }) => {
        const versions = (programs?.versions ?? []).filter((v) => v.target === target);
        const live = programs?.promoted[target] ?? null;
        const current = versions.find((v) => v.id === live);
        return (
          <section key={target} aria-label={label}>
            <h2>{label}</h2>
            <p>
              New turns run <strong>{current ? versionLabel(current) : "the baseline"}</strong>.{" "}
              {live ? (
                <button type="button" aria-label={`Roll back ${target}`} onClick={() => act(api.rollback(target))}>Roll back</button>
              ) : null}
            </p>
            {versions.length ? (
              <ul className="program-versions">
                {[...versions].reverse().map((v) => (
                  <Version key={v.id} v={v} onPromote={() => act(api.promote(v.id))} />
                ))}
              </ul>
            ) : (
              <p className="muted">No versions yet.</p>
            )}
          </section>
        );
      })}
    </div>
  );
}
