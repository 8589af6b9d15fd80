/* Limits for the messages of one session, sent as `limits` in the WebSocket `message` frame; the
server checks them (an `invalid` socket_error frame names the bad one). Empty fields keep the
server's own limit. */

export const LIMIT_FIELDS = [
  { key: "max_calls", label: "Max LM calls", hint: "every model call in the tree", min: 1, step: 1 },
  { key: "max_tokens", label: "Max tokens", hint: "prompt and completion, whole tree", min: 1, step: 1000 },
  { key: "max_usd", label: "Max USD", hint: "priced models only", min: 0.01, step: 0.01 },
  { key: "max_wall_s", label: "Max seconds", hint: "wall time of the turn", min: 1, step: 1 },
  { key: "max_depth", label: "Max depth", hint: "the agent is depth 0", min: 0, step: 1 },
  { key: "max_iterations", label: "Max iterations", hint: "per recursive run", min: 1, step: 1 },
] as const;

export type LimitKey = (typeof LIMIT_FIELDS)[number]["key"];
export type LimitDraft = Partial<Record<LimitKey, string>>;
/** A value the browser could not read as a number goes as typed: the server says what is wrong. */
export type MessageLimits = Partial<Record<LimitKey, number | string>>;

export function toLimits(draft: LimitDraft): MessageLimits {
  const limits: MessageLimits = {};
  for (const { key } of LIMIT_FIELDS) {
    const text = (draft[key] ?? "").trim();
    if (text === "") continue;
    const value = Number(text);
    limits[key] = Number.isFinite(value) ? value : text;
  }
  return limits;
}

function one(key: LimitKey, value: number | string): string {
  const n = Number(value);
  switch (key) {
    case "max_calls":
      return `${value} call${n === 1 ? "" : "s"}`;
    case "max_tokens":
      return `${Number.isFinite(n) ? n.toLocaleString("en-US") : value} tokens`;
    case "max_usd":
      return `$${value}`;
    case "max_wall_s":
      return `${value} s`;
    case "max_depth":
      return `depth ${value}`;
    case "max_iterations":
      return `${value} it`;
  }
}

/** "1 call · $0.5 · depth 1", or "" without limits. */
export function limitsSummary(limits: MessageLimits): string {
  return LIMIT_FIELDS.filter(({ key }) => limits[key] !== undefined)
    .map(({ key }) => one(key, limits[key] as number | string))
    .join(" · ");
}
