/* "Budget" beside the send button: limits for the next messages of this session, each field
optional (empty keeps the server's limit, shown as the placeholder). */

import { useRef, useState } from "react";

import { Icon } from "../ui/Icon";
import { useClickOutside } from "../ui/useClickOutside";
import { LIMIT_FIELDS, limitsSummary, toLimits, type LimitDraft } from "./limits";

export interface BudgetPopoverProps {
  draft: LimitDraft;
  onChange: (draft: LimitDraft) => void;
  /** The server's limits (GET /settings), shown as placeholders. */
  defaults?: Record<string, number>;
}

export function BudgetPopover({ draft, onChange, defaults }: BudgetPopoverProps) {
  const [open, setOpen] = useState(false);
  const box = useRef<HTMLDivElement>(null);
  const summary = limitsSummary(toLimits(draft));

  useClickOutside(box, open, () => setOpen(false));

  return (
    <div className="budget-popover" ref={box}>
      <button
        type="button"
        className={`budget-button ${summary ? "set" : ""}`}
        aria-label={summary ? `Budget for your messages: ${summary}. Change it` : "Set a budget for your messages"}
        aria-expanded={open}
        title={summary ? `Budget: ${summary}` : "Budget for your messages"}
        onClick={() => setOpen(!open)}
        data-testid="budget-button"
      >
        <Icon name="gauge" size={15} />
        <span className="budget-summary">{summary || "Budget"}</span>
      </button>
      {open ? (
        <div
          className="popover"
          role="dialog"
          aria-label="Budget for your messages"
          onKeyDown={(e) => {
            if (e.key === "Escape") {
              e.stopPropagation();
              setOpen(false);
            } else if (e.key === "Enter") {
              e.preventDefault();
              setOpen(false);
            }
          }}
        >
          <p className="popover-title">Budget for each message</p>
          <div className="popover-grid">
            {LIMIT_FIELDS.map(({ key, label, hint, min, step }, i) => (
              <label key={key} className="field">
                <span className="field-label">{label}</span>
                <input
                  type="number"
                  inputMode="decimal"
                  min={min}
                  step={step}
                  autoFocus={i === 0}
                  value={draft[key] ?? ""}
                  placeholder={defaults?.[key] !== undefined ? String(defaults[key]) : "server's"}
                  onChange={(e) => onChange({ ...draft, [key]: e.target.value })}
                />
                <span className="field-hint">{hint}</span>
              </label>
            ))}
          </div>
          <p className="field-hint">Empty fields keep the server's limit (shown greyed). The whole tree of a turn shares one budget.</p>
          <div className="feedback-actions">
            <button type="button" className="primary" aria-label="Close the budget" onClick={() => setOpen(false)}>Done</button>
            <button type="button" aria-label="Clear the budget" disabled={!summary} onClick={() => onChange({})}>Clear</button>
          </div>
        </div>
      ) : null}
    </div>
  );
}
