/* The shared event-tree fixtures (tests/data/event_trees/): each event stream folded by this
reducer must give the tree stored with it, which the Python fold (fleet_rlm/tree.py) gives too.
`snapshot` is the twin of fleet_rlm.tree.snapshot: the shape both folds are compared on. */

import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

import type { FleetEvent, LmCallEvent } from "../generated/events";
import { applyEvent, buildTree, emptyTree, type TurnTree } from "./reducer";

const DIR = fileURLToPath(new URL("../../../tests/data/event_trees/", import.meta.url));

interface Fixture {
  description: string;
  events: FleetEvent[];
  tree: unknown;
}

const seqs = (calls: readonly LmCallEvent[]) => calls.map((c) => c.seq);

function snapshot(tree: TurnTree) {
  const nodes: Record<string, unknown> = {};
  for (const [id, n] of Object.entries(tree.nodes)) {
    nodes[id] = {
      parent: n.parentId,
      depth: n.depth,
      kind: n.kind,
      status: n.status,
      model: n.model,
      children: n.children,
      calls: n.own.calls,
      node_calls: seqs(n.calls),
      answer: n.answer,
      errors: n.errors.map((e) => e.seq),
      cells: n.iterations.map((c) => ({
        iteration: c.iteration,
        phase: c.phase,
        seen: c.seen,
        code: c.code,
        output: c.output?.seq ?? null,
        calls: seqs(c.calls),
        sub_calls: seqs(c.subCalls),
        children: c.children,
      })),
      steps: n.steps.map((s) => ({
        tool: s.toolName,
        call: s.call?.seq ?? null,
        result: s.result?.output ?? null,
        error: s.result?.error ?? false,
        children: s.children,
        artifacts: s.artifacts.map((a) => a.path),
      })),
    };
  }
  return {
    status: tree.status,
    question: tree.question,
    answer: tree.answer,
    ask_user: tree.askUser?.seq ?? null,
    roots: tree.roots,
    last_seq: tree.lastSeq,
    calls: tree.totals.calls,
    tokens: tree.totals.promptTokens + tree.totals.completionTokens,
    errors: tree.errors.map((e) => e.seq),
    cancelled: tree.cancelled?.seq ?? null,
    nodes,
  };
}

const names = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .map((f) => f.slice(0, -".json".length))
  .sort();

function load(name: string): Fixture {
  return JSON.parse(readFileSync(`${DIR}${name}.json`, "utf-8")) as Fixture;
}

describe("the shared event-tree fixtures", () => {
  it("are there", () => {
    expect(names).toEqual(expect.arrayContaining(["agent_turn", "agent_turn_shuffled", "budget_stop"]));
  });

  it.each(names)("%s: the fold gives the stored tree", (name) => {
    const fixture = load(name);
    expect(snapshot(buildTree(fixture.events))).toEqual(fixture.tree);
  });

  it.each(names)("%s: event by event gives the same tree", (name) => {
    const fixture = load(name);
    const tree = fixture.events.reduce(applyEvent, emptyTree());
    expect(snapshot(tree)).toEqual(fixture.tree);
  });
});
