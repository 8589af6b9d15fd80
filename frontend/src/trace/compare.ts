/* What Compare sets side by side for a turn, read from its tree (the same fold as the tree view)
as pure functions (compare.test.ts). */

import type { TurnTree } from "../tree/reducer";
import { budgetView } from "../tree/reducer";
import { fmtSeconds, fmtTokens, fmtUsd } from "../ui/format";

/** The tree's shape as an outline: each node with its steps, iterations, calls and code cells,
 * children indented under it. Two runs of the same work differ here first. */
export function treeShape(tree: TurnTree): string {
  const lines: string[] = [];
  const walk = (id: string, indent: string) => {
    const n = tree.nodes[id];
    if (!n) return;
    const parts = [`${n.kind === "rlm" ? "RLM" : "Agent"} d${n.depth}`, n.status];
    if (n.model) parts.push(n.model);
    if (n.steps.length) parts.push(`${n.steps.length} step${n.steps.length === 1 ? "" : "s"} (${n.steps.map((s) => s.toolName).join(", ")})`);
    if (n.iterations.length) parts.push(`${n.iterations.length} iteration${n.iterations.length === 1 ? "" : "s"}`);
    const subs = n.iterations.reduce((k, c) => k + c.subCalls.length, 0);
    if (subs) parts.push(`${subs} sub-call${subs === 1 ? "" : "s"}`);
    const failed = n.iterations.filter((c) => c.output?.error_type).length;
    if (failed) parts.push(`${failed} failed cell${failed === 1 ? "" : "s"}`);
    lines.push(indent + parts.join(" · "));
    for (const c of n.children) walk(c, `${indent}  `);
  };
  tree.roots.forEach((id) => walk(id, ""));
  return lines.join("\n");
}

/** The models a turn called, each once, in the order first called. */
export function modelsOf(tree: TurnTree): string[] {
  const seen = new Set<string>();
  for (const e of tree.events) if (e.type === "lm_call") seen.add(e.model);
  return [...seen];
}

export type CompareRow = { label: string; values: [string, string]; differs: boolean };

function facts(tree: TurnTree): Record<string, string> {
  const b = budgetView(tree);
  const limit = (v: number | null, f: (n: number) => string) => (v === null ? "none" : f(v));
  return {
    question: tree.question,
    status: tree.status,
    models: modelsOf(tree).join(", ") || "—",
    limits: `calls ${limit(b.maxCalls, String)} · tokens ${limit(b.maxTokens, fmtTokens)} · cost ${limit(b.maxUsd, (n) => fmtUsd(n))} · time ${limit(b.maxWall, fmtSeconds)}`,
    cost: fmtUsd(b.usd, b.usdUnknown),
    calls: String(b.calls),
    tokens: fmtTokens(b.tokens),
    time: fmtSeconds(b.elapsed),
    answer: tree.answer,
    "tree shape": treeShape(tree),
  };
}

/** The rows of Compare, each marked where the two turns differ. */
export function compareRows(a: TurnTree, b: TurnTree): CompareRow[] {
  const fa = facts(a);
  const fb = facts(b);
  return Object.keys(fa).map((label) => {
    const values: [string, string] = [fa[label] ?? "", fb[label] ?? ""];
    return { label, values, differs: values[0] !== values[1] };
  });
}
