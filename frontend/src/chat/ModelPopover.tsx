/* "Model" beside the budget: the session's own root and sub model (empty: the server's), saved
on the session for its next turns, and "Test connection", one tiny call to each. */

import { useEffect, useRef, useState } from "react";

import { api, errorText, type CheckResult } from "../api/client";
import { Icon } from "../ui/Icon";
import { useClickOutside } from "../ui/useClickOutside";

export interface ModelPopoverProps {
  sessionId: string;
  /** The server's models, shown as placeholders. */
  defaults?: { root: string; sub: string | null };
}

const clean = (text: string): string | null => text.trim() || null;

export function ModelPopover({ sessionId, defaults }: ModelPopoverProps) {
  const [open, setOpen] = useState(false);
  const [saved, setSaved] = useState<{ root: string | null; sub: string | null }>({ root: null, sub: null });
  const [root, setRoot] = useState("");
  const [sub, setSub] = useState("");
  const [result, setResult] = useState<CheckResult | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [working, setWorking] = useState(false);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    let live = true;
    api.getSession(sessionId).then((s) => {
      if (!live) return;
      setSaved({ root: s.root_model, sub: s.sub_model });
      setRoot(s.root_model ?? "");
      setSub(s.sub_model ?? "");
    }, () => undefined);
    return () => {
      live = false;
    };
  }, [sessionId]);

  useClickOutside(box, open, () => setOpen(false));

  const run = async (f: () => Promise<void>) => {
    setWorking(true);
    setStatus(null);
    try {
      await f();
    } catch (e) {
      setStatus(errorText(e));
    } finally {
      setWorking(false);
    }
  };
  const save = () => run(async () => {
    const s = await api.setSessionModels(sessionId, clean(root), clean(sub));
    setSaved({ root: s.root_model, sub: s.sub_model });
    setStatus("Saved: the next turns use these models.");
  });
  const test = () => run(async () => {
    setResult(null);
    setResult(await api.testSessionModels(sessionId, clean(root), clean(sub)));
  });
  const summary = saved.root ?? saved.sub ? (saved.root ?? defaults?.root ?? "") : "";

  return (
    <div className="budget-popover" ref={box}>
      <button type="button" className={`budget-button ${summary ? "set" : ""}`} aria-label={summary ? `Models of this session: ${summary}. Change them` : "Choose the models of this session"} aria-expanded={open} title="Models of this session" onClick={() => setOpen(!open)} data-testid="model-button">
        <Icon name="cpu" size={15} />
        <span className="budget-summary">{summary ? summary.split("/").at(-1) : "Model"}</span>
      </button>
      {open ? (
        <div className="popover" role="dialog" aria-label="Models of this session" onKeyDown={(e) => {
          if (e.key === "Escape") {
            e.stopPropagation();
            setOpen(false);
          }
        }}>
          <p className="popover-title">Models of this session</p>
          <label className="field">
            <span className="field-label">Root model</span>
            <input aria-label="Root model of this session" autoFocus value={root} placeholder={defaults?.root ?? "server's"} onChange={(e) => setRoot(e.target.value)} />
            <span className="field-hint">The agent and each RLM node (provider/model).</span>
          </label>
          <label className="field">
            <span className="field-label">Sub model</span>
            <input aria-label="Sub model of this session" value={sub} placeholder={defaults?.sub ?? defaults?.root ?? "server's"} onChange={(e) => setSub(e.target.value)} />
            <span className="field-hint">llm_query's calls.</span>
          </label>
          <p className="field-hint">Empty fields keep the server's models (greyed). The server's API key goes only to the endpoint it was set for.</p>
          <div className="feedback-actions">
            <button type="button" className="primary" aria-label="Save the models of this session" disabled={working} onClick={() => void save()}>Save</button>
            <button type="button" aria-label="Test connection to the models" disabled={working} onClick={() => void test()}>{working ? "Testing…" : "Test connection"}</button>
          </div>
          {result ? (
            <p className={result.ok ? "ok-text" : "error-text"} role="status" data-testid="model-test-result">
              {result.ok ? "✓ " : "✗ "}{result.message}
            </p>
          ) : null}
          {status ? <p className="muted" role="status">{status}</p> : null}
        </div>
      ) : null}
    </div>
  );
}
