/* The execution tree of one turn: agent steps, RLM nodes with their code cells, sub-model calls
under the cell that made them, child RLMs under their parent. */

import { createContext, useContext, useEffect, useRef, useState, type ReactNode } from "react";

import type { Limits, LmCallEvent } from "../generated/events";
import { Code } from "../ui/Deferred";
import { ArtifactList } from "./Artifacts";
import { clip, fmtSeconds, fmtTokens, fmtUsd } from "../ui/format";
import {
  budgetView,
  subtreeTotals,
  type AgentStep,
  type CallTotals,
  type IterationCell,
  type TreeNode,
  type TurnTree,
} from "./reducer";

/** What a reader can open from the tree: a model call (in the call inspector), and which node
 * the address names (it is marked and scrolled to). */
export interface TreeActions {
  openCall: (call: LmCallEvent) => void;
  selectedNodeId: string | null;
}

export const TreeActionsContext = createContext<TreeActions>({ openCall: () => undefined, selectedNodeId: null });

function OpenCall({ call, label }: { call: LmCallEvent; label: string }) {
  const { openCall } = useContext(TreeActionsContext);
  return (
    <button type="button" className="link-button open-call" data-testid="open-call" data-call-seq={call.seq} aria-label={label} title="Open the request and reply" onClick={() => openCall(call)}>
      {call.attempt > 1 ? `prompt (attempt ${call.attempt})` : "prompt"}
    </button>
  );
}

export function StatusChip({ status }: { status: string }) {
  return (
    <span className={`chip status-${status}`} data-status={status}>
      {status === "running" ? <span className="spinner" aria-hidden="true" /> : null}
      {status}
    </span>
  );
}

function Totals({ totals, time }: { totals: CallTotals; time?: number }) {
  const tokens = totals.promptTokens + totals.completionTokens;
  return (
    <span className="totals">
      <span title={`${totals.calls} LM calls`}>{totals.calls} calls</span>
      <span title={`${totals.promptTokens} prompt + ${totals.completionTokens} completion tokens`}>
        {fmtTokens(tokens)} tok
      </span>
      <span title={totals.usdUnknown ? `cost; ${totals.usdUnknown} calls of models without a known price` : "cost"}>
        {fmtUsd(totals.usd, totals.usdUnknown)}
      </span>
      {time !== undefined ? <span title="wall time">{fmtSeconds(time)}</span> : null}
    </span>
  );
}

function Meter({ label, value, max, format, shown }: { label: string; value: number; max: number | null; format: (n: number) => string; shown?: string }) {
  const ratio = max ? Math.min(1, value / max) : 0;
  const level = ratio > 0.9 ? "high" : ratio > 0.6 ? "mid" : "low";
  return (
    <div className="meter">
      <div className="meter-label">
        <span>{label}</span>
        <span>
          {shown ?? format(value)}
          {max !== null ? ` / ${format(max)}` : ""}
        </span>
      </div>
      <div
        className={`meter-track level-${level}`}
        role="meter"
        aria-label={`${label} used`}
        aria-valuemin={0}
        aria-valuemax={max ?? undefined}
        aria-valuenow={value}
        aria-valuetext={`${format(value)}${max !== null ? ` of ${format(max)}` : ""}`}
      >
        <div className="meter-fill" style={{ width: `${ratio * 100}%` }} />
      </div>
    </div>
  );
}

export function BudgetMeter({ tree, defaults }: { tree: TurnTree; defaults?: Partial<Limits> }) {
  const b = budgetView(tree, defaults);
  return (
    <div className="budget" aria-label="Budget for the whole tree">
      <Meter label="LM calls" value={b.calls} max={b.maxCalls} format={String} />
      <Meter label="Tokens" value={b.tokens} max={b.maxTokens} format={fmtTokens} />
      <Meter label="Cost" value={b.usd} max={b.maxUsd} format={(n) => fmtUsd(n)} shown={fmtUsd(b.usd, b.usdUnknown)} />
      <Meter label="Time" value={b.elapsed} max={b.maxWall} format={fmtSeconds} />
    </div>
  );
}

function Collapsible({ summary, children, initiallyOpen = false, label }: { summary: ReactNode; children: ReactNode; initiallyOpen?: boolean; label: string }) {
  const [open, setOpen] = useState(initiallyOpen);
  return (
    <div className={`collapsible ${open ? "open" : ""}`}>
      <button type="button" className="disclosure" aria-expanded={open} aria-label={`${open ? "Hide" : "Show"} ${label}`} onClick={() => setOpen(!open)}>
        <span className="caret" aria-hidden="true">{open ? "▾" : "▸"}</span>
        {summary}
      </button>
      {open ? <div className="collapsible-body">{children}</div> : null}
    </div>
  );
}

function CallList({ calls, label }: { calls: readonly LmCallEvent[]; label: string }) {
  if (!calls.length) return null;
  const tokens = calls.reduce((n, c) => n + c.prompt_tokens + c.completion_tokens, 0);
  return (
    <Collapsible
      label={label}
      summary={
        <span className="calls-summary">
          {calls.length} {label} · {fmtTokens(tokens)} tok
        </span>
      }
    >
      <ol className="calls">
        {calls.map((c) => (
          <li key={c.seq} className={c.error ? "call error" : "call"}>
            <OpenCall call={c} label={`Open the ${c.role} call ${c.seq}`} />
            <Collapsible
              label={`call ${c.seq} previews`}
              summary={
                <span>
                  <b>{c.role}</b> {c.model} · {c.prompt_tokens}+{c.completion_tokens} tok · {fmtSeconds(c.latency_s)}
                  {c.cost_usd !== null ? ` · ${fmtUsd(c.cost_usd)}` : ""}
                  {c.attempt > 1 ? ` · attempt ${c.attempt}` : ""}
                  {c.http_status !== null ? ` · HTTP ${c.http_status}` : ""}
                  {c.error ? ` · ${clip(c.error, 80)}` : ""}
                  {c.retry_in_s !== null ? ` · retrying in ${fmtSeconds(c.retry_in_s)}` : ""}
                  {c.counted === false ? " · not sent (not counted)" : ""}
                </span>
              }
            >
              <div className="preview-label">prompt</div>
              <pre className="preview">{c.prompt_preview || "(empty)"}</pre>
              <div className="preview-label">response</div>
              <pre className="preview">{c.response_preview || "(empty)"}</pre>
            </Collapsible>
          </li>
        ))}
      </ol>
    </Collapsible>
  );
}

function Output({ cell, ended }: { cell: IterationCell; ended: string | null }) {
  const out = cell.output;
  if (!out) return ended ? <div className="cell-output failed">no output: {ended}</div> : <div className="cell-output pending">running…</div>;
  const failed = out.error_type !== null;
  return (
    <div className={`cell-output ${failed ? "failed" : ""}`} aria-label={`Output of iteration ${cell.iteration}`}>
      <div className="cell-meta">
        output · {fmtSeconds(out.duration_s)}
        {out.timed_out ? " · timed out" : ""}
        {out.state_lost ? " · sandbox restarted, variables lost" : ""}
      </div>
      {out.stdout ? <pre className="stdout">{out.stdout}</pre> : null}
      {out.stderr ? <pre className="stderr">{out.stderr}</pre> : null}
      {failed ? <pre className="traceback">{out.traceback ?? `${out.error_type}: ${out.error_message ?? ""}`}</pre> : null}
      {!out.stdout && !out.stderr && !failed ? <div className="muted">(no output)</div> : null}
    </div>
  );
}

/** Why a cell of a node that has stopped never got its code or output; null while it runs. */
function endedWhy(node: TreeNode): string | null {
  if (node.status === "running" || node.status === "waiting") return null;
  const error = node.errors.at(-1);
  return error ? `${error.error_type}: ${error.message}` : `the run ended (${node.status})`;
}

function Cell({ cell, tree, ended }: { cell: IterationCell; tree: TurnTree; ended: string | null }) {
  return (
    <li className="cell" data-testid="iteration" aria-label={`Iteration ${cell.iteration}`}>
      <div className="cell-head">
        <span className="cell-index">#{cell.iteration}</span>
        {cell.phase === "extract" ? <span className="chip">extract</span> : null}
        {cell.calls.length ? <Totals totals={cell.calls.reduce(addCall, zero)} /> : null}
        {cell.calls.map((c) => (
          <OpenCall key={c.seq} call={c} label={`Open the ${c.role} call of iteration ${cell.iteration}${c.attempt > 1 ? `, attempt ${c.attempt}` : ""}`} />
        ))}
      </div>
      {cell.reasoning ? <p className="reasoning">{cell.reasoning}</p> : null}
      {cell.code ? <Code code={cell.code} label={`Code of iteration ${cell.iteration}`} /> : null}
      {cell.seen ? <Output cell={cell} ended={ended} /> : ended ? <div className="cell-output failed" data-testid="cell-failed">not written: {ended}</div> : <div className="cell-output pending">thinking…</div>}
      <CallList calls={cell.subCalls} label="sub-LM calls" />
      {cell.children.length ? (
        <div className="children">
          {cell.children.map((id) => (
            <NodeView key={id} id={id} tree={tree} />
          ))}
        </div>
      ) : null}
    </li>
  );
}

const zero: CallTotals = { calls: 0, promptTokens: 0, completionTokens: 0, usd: 0, usdUnknown: 0, latency: 0 };
function addCall(t: CallTotals, c: LmCallEvent): CallTotals {
  return {
    calls: t.calls + (c.counted === false ? 0 : 1),
    promptTokens: t.promptTokens + c.prompt_tokens,
    completionTokens: t.completionTokens + c.completion_tokens,
    usd: t.usd + (c.cost_usd ?? 0),
    usdUnknown: t.usdUnknown + (c.cost_usd === null ? 1 : 0),
    latency: t.latency + c.latency_s,
  };
}

function Step({ step, tree }: { step: AgentStep; tree: TurnTree }) {
  const args = Object.keys(step.toolArgs).length ? JSON.stringify(step.toolArgs, null, 1) : "";
  return (
    <li className="step" data-testid="agent-step" aria-label={`Agent step ${step.toolName}`}>
      {step.thought ? <p className="reasoning">{step.thought}</p> : null}
      <div className="tool">
        <span className="tool-name">{step.toolName}</span>
        {step.call ? <OpenCall call={step.call} label={`Open the agent call of step ${step.toolName}`} /> : null}
        {args ? <code className="tool-args">{clip(args.replace(/\n\s*/g, " "), 240)}</code> : null}
      </div>
      {step.result ? (
        step.result.output.length > 300 ? (
          <Collapsible label={`result of ${step.toolName}`} summary={<span className={step.result.error ? "error-text" : "muted"}>{clip(step.result.output, 120)}</span>}>
            <pre className={step.result.error ? "traceback" : "stdout"}>{step.result.output}</pre>
          </Collapsible>
        ) : (
          <pre className={step.result.error ? "traceback" : "stdout result"}>{step.result.output || "(empty)"}</pre>
        )
      ) : null}
      <ArtifactList artifacts={step.artifacts} label={`Files written by ${step.toolName}`} />
      {step.children.length ? (
        <div className="children">
          {step.children.map((id) => (
            <NodeView key={id} id={id} tree={tree} />
          ))}
        </div>
      ) : null}
    </li>
  );
}

export function NodeView({ id, tree }: { id: string; tree: TurnTree }) {
  const node = tree.nodes[id];
  const [open, setOpen] = useState(true);
  const { selectedNodeId } = useContext(TreeActionsContext);
  const selected = selectedNodeId === id;
  const head = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (selected) head.current?.scrollIntoView({ block: "center" });
  }, [selected]);
  if (!node) return null;
  const totals = subtreeTotals(tree, id);
  const nested = new Set([...node.iterations.flatMap((c) => c.children), ...node.steps.flatMap((s) => s.children)]);
  const loose = node.children.filter((c) => !nested.has(c));
  // Calls no step or cell shows (a refused attempt, the agent's final answer, a summary).
  const claimed = new Set(node.steps.map((st) => st.call?.seq));
  const otherCalls = node.calls.filter((c) => !claimed.has(c.seq));
  const title = node.kind === "rlm" ? "RLM" : "Agent";
  const iterations = node.iterations.length;
  return (
    <div
      className={`node node-${node.kind} status-${node.status}${selected ? " tree-node-selected" : ""}`}
      data-testid="tree-node"
      data-selected={selected ? "true" : undefined}
      data-node-id={node.id}
      data-kind={node.kind}
      data-depth={node.depth}
      data-status={node.status}
      aria-label={`${title} node at depth ${node.depth}, ${node.status}`}
    >
      <div className="node-head" ref={head}>
        <button type="button" className="node-toggle" aria-expanded={open} aria-label={`${open ? "Collapse" : "Expand"} ${title} node at depth ${node.depth}`} onClick={() => setOpen(!open)}>
          <span className="caret" aria-hidden="true">{open ? "▾" : "▸"}</span>
          <span className={`kind kind-${node.kind}`}>{title}</span>
          <span className="depth">d{node.depth}</span>
        </button>
        {node.model ? <span className="model" title={node.subModel ? `sub model ${node.subModel}` : undefined}>{node.model}</span> : null}
        <StatusChip status={node.status} />
        {node.kind === "rlm" ? (
          <span className="iterations" title="iterations">
            {iterations}
            {node.maxIterations ? `/${node.maxIterations}` : ""} it
          </span>
        ) : null}
        <Totals totals={totals} time={node.endTs - node.startTs} />
      </div>
      {open ? (
        <div className="node-body">
          {node.query ? (
            <div className="rlm-query" data-testid="rlm-query">
              <span className="preview-label">query</span> {node.query}
            </div>
          ) : null}
          {node.kind === "rlm" && Object.keys(node.inputs).length ? (
            <div className="inputs muted">
              {node.signature ? <code>{node.signature}</code> : null}{" "}
              {Object.entries(node.inputs)
                .map(([k, v]) => `${k}: ${v.type}, ${v.chars.toLocaleString()} chars`)
                .join(" · ")}
            </div>
          ) : null}
          {node.steps.length ? (
            <ol className="steps">
              {node.steps.map((s, i) => (
                <Step key={`${s.seq}-${i}`} step={s} tree={tree} />
              ))}
            </ol>
          ) : null}
          <CallList calls={otherCalls} label="other model calls" />
          {node.iterations.length ? (
            <ol className="cells">
              {node.iterations.map((c) => (
                <Cell key={c.iteration} cell={c} tree={tree} ended={endedWhy(node)} />
              ))}
            </ol>
          ) : null}
          {loose.map((cid) => (
            <div key={cid} className="children">
              <NodeView id={cid} tree={tree} />
            </div>
          ))}
          {node.answer ? (
            <div className="node-answer">
              <div className="preview-label">answer</div>
              <pre className="stdout">{answerText(node.answer)}</pre>
            </div>
          ) : null}
          {node.errors.map((e) => (
            <div key={e.seq} className="node-error" role="alert">
              <b>{e.error_type}</b>: {e.message}
              {e.detail ? <pre className="traceback">{e.detail}</pre> : null}
            </div>
          ))}
        </div>
      ) : null}
    </div>
  );
}

function answerText(answer: Record<string, unknown>): string {
  const keys = Object.keys(answer);
  if (keys.length === 1 && typeof answer[keys[0] as string] === "string") return answer[keys[0] as string] as string;
  return JSON.stringify(answer, null, 2);
}

export function TreeBody({ tree }: { tree: TurnTree }) {
  if (!tree.roots.length) return <p className="muted empty">No events yet.</p>;
  return (
    <div className="tree-body" data-testid="tree">
      {tree.roots.map((id) => (
        <NodeView key={id} id={id} tree={tree} />
      ))}
      {tree.cancelled ? (
        <div className="node-error">
          Cancelled: {tree.cancelled.reason}
          {tree.cancelled.partial_answer ? <pre className="stdout">{answerText(tree.cancelled.partial_answer)}</pre> : null}
        </div>
      ) : null}
    </div>
  );
}
