import { useEffect, useState } from "react";

import { Icon } from "./Icon";

/** Writes `text` to the clipboard; without a clipboard API (plain HTTP to another host), through
 * a hidden text area and the browser's copy command. */
export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("the browser refused to copy");
}

/** A small copy button; says "copied" (or that it could not) for a moment after a click. */
export function CopyButton({ text, label }: { text: string; label: string }) {
  const [state, setState] = useState<"idle" | "copied" | "failed">("idle");
  useEffect(() => {
    if (state === "idle") return;
    const t = setTimeout(() => setState("idle"), 2500);
    return () => clearTimeout(t);
  }, [state]);
  return (
    <button
      type="button"
      className="icon copy-button"
      aria-label={label}
      title={state === "copied" ? "Copied" : state === "failed" ? "Could not copy" : label}
      data-state={state}
      onClick={() => copyText(text).then(() => setState("copied"), () => setState("failed"))}
    >
      <Icon name="copy" size={13} />
      {state !== "idle" ? (
        <span className="muted tiny" role="status">
          {state === "copied" ? "copied" : "copy failed: select the text"}
        </span>
      ) : null}
    </button>
  );
}
