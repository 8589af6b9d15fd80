/* Two turns side by side: question, status, models, limits, cost, calls, tokens, time, answer
and the shape of their trees, each drawn from the turn's events by the one fold; rows where they
differ are marked. */

import { useEffect, useState } from "react";

import { api, errorText, type Turn } from "../api/client";
import { stepHref } from "../route";
import { compareRows } from "../trace/compare";
import { buildTree, type TurnTree } from "../tree/reducer";
import "../trace/trace.css";

interface Side {
  turn: Turn;
  tree: TurnTree;
}

async function load(turnId: string): Promise<Side> {
  const [turn, events] = await Promise.all([api.getTurn(turnId), api.turnEvents(turnId)]);
  return { turn, tree: buildTree(events.events, turnId) };
}

export function ComparePage({ a, b }: { a: string; b: string }) {
  const [sides, setSides] = useState<[Side, Side] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    setSides(null);
    setError(null);
    Promise.all([load(a), load(b)]).then(
      (both) => live && setSides(both),
      (e: unknown) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [a, b]);

  return (
    <div className="page compare-page">
      <h1>Compare turns</h1>
      {error ? <div className="banner error" role="alert">{error}</div> : null}
      {sides ? (
        <div className="compare" role="table" aria-label="Two turns side by side">
          <div className="compare-key" role="columnheader">turn</div>
          {sides.map((s, i) => (
            <div key={i} role="columnheader">
              <a href={stepHref(s.turn.session_id, { turnId: s.turn.id })}>Turn {s.turn.index}</a>{" "}
              <span className="muted tiny">{new Date(s.turn.created_at).toLocaleString()}</span>
            </div>
          ))}
          {compareRows(sides[0].tree, sides[1].tree).map((row) => (
            <div key={row.label} role="row" style={{ display: "contents" }} data-testid="compare-row" data-label={row.label} data-differs={row.differs ? "true" : "false"}>
              <div className="compare-key" role="rowheader">{row.label}</div>
              {row.values.map((v, i) => (
                <div key={i} role="cell" className={row.differs ? "differs" : undefined}>
                  {row.label === "tree shape" ? <pre className="shape">{v}</pre> : v || "—"}
                </div>
              ))}
            </div>
          ))}
        </div>
      ) : !error ? (
        <p className="muted">Loading…</p>
      ) : null}
    </div>
  );
}

export default ComparePage;
