/* Models, endpoint, write-only keys, budgets and the sandbox backend, with the server's own
checks ("Test model", "Test sandbox") run on the values in the form before they are saved. */

import { useEffect, useState, type ReactNode } from "react";

import { api, errorText, type CheckResult, type SandboxBackend, type SettingsOut, type SettingsPatch } from "../api/client";

const LIMITS: { key: string; label: string; step?: string; hint: string }[] = [
  { key: "max_calls", label: "LM calls per turn", hint: "every model call in the whole tree" },
  { key: "max_tokens", label: "Tokens per turn", hint: "prompt + completion" },
  { key: "max_usd", label: "USD per turn", step: "0.01", hint: "priced models only" },
  { key: "max_wall_s", label: "Seconds per turn", hint: "wall time" },
  { key: "max_depth", label: "Recursion depth", hint: "the agent is depth 0" },
  { key: "max_iterations", label: "Iterations per RLM", hint: "before the extract fallback" },
];

interface Form {
  root_model: string;
  sub_model: string;
  api_base: string;
  api_key: string;
  clear_api_key: boolean;
  daytona_api_key: string;
  sandbox: SandboxBackend;
  limits: Record<string, string>;
}

function toForm(s: SettingsOut): Form {
  return {
    root_model: s.root_model,
    sub_model: s.sub_model ?? "",
    api_base: s.api_base ?? "",
    api_key: "",
    clear_api_key: false,
    daytona_api_key: "",
    sandbox: s.sandbox,
    limits: Object.fromEntries(Object.entries(s.limits).map(([k, v]) => [k, String(v)])),
  };
}

/** Only what changed: keys are sent only when typed (or cleared on purpose). */
function toPatch(form: Form, saved: SettingsOut): SettingsPatch {
  const patch: SettingsPatch = {};
  if (form.root_model.trim() !== saved.root_model) patch.root_model = form.root_model.trim();
  if ((form.sub_model.trim() || null) !== saved.sub_model) patch.sub_model = form.sub_model.trim() || null;
  if ((form.api_base.trim() || null) !== saved.api_base) patch.api_base = form.api_base.trim() || null;
  if (form.api_key) patch.api_key = form.api_key;
  else if (form.clear_api_key) patch.api_key = null;
  if (form.daytona_api_key) patch.daytona_api_key = form.daytona_api_key;
  if (form.sandbox !== saved.sandbox) patch.sandbox = form.sandbox;
  const limits: Record<string, number | null> = {};
  for (const { key } of LIMITS) {
    const text = (form.limits[key] ?? "").trim();
    const value = text === "" ? null : Number(text);
    if (value !== (saved.limits[key] ?? null)) limits[key] = value;
  }
  if (Object.keys(limits).length) patch.limits = limits;
  return patch;
}

const HEALTH_MARKS = { ok: "✓", warn: "!", fail: "✗" } as const;

function Check({ result, busy, name }: { result: CheckResult | string | null; busy: boolean; name: string }) {
  if (busy) return <div className="check muted" role="status"><span className="spinner" aria-hidden="true" /> Testing {name}…</div>;
  if (result === null) return null;
  if (typeof result === "string") return <div className="check fail" role="alert">{result}</div>;
  return (
    <div className={`check ${result.ok ? "ok" : "fail"}`} role="status" data-testid={`check-${name}`}>
      <b>{result.ok ? "✓ Works" : "✗ Problem"}</b>
      {result.problem ? <span className="chip">{result.problem}</span> : null}
      {result.duration_s !== undefined ? <span className="muted"> {result.duration_s.toFixed(2)} s</span> : null}
      <p>{result.message}</p>
      {result.checks?.length ? (
        <ul className="health-checks" aria-label="Health checks">
          {result.checks.map((c) => (
            <li key={c.name} className={`health-${c.status}`} data-check={c.name}>
              <span aria-label={c.status}>{HEALTH_MARKS[c.status]}</span> {c.detail}
            </li>
          ))}
        </ul>
      ) : null}
      {result.detail ? (
        <details>
          <summary>Detail</summary>
          <pre className="preview">{result.detail}</pre>
        </details>
      ) : null}
    </div>
  );
}

function Field({ label, hint, children }: { label: string; hint?: ReactNode; children: ReactNode }) {
  return (
    <label className="field">
      <span className="field-label">{label}</span>
      {children}
      {hint ? <span className="field-hint">{hint}</span> : null}
    </label>
  );
}

export function SettingsPage({ onSaved }: { onSaved: (s: SettingsOut) => void }) {
  const [saved, setSaved] = useState<SettingsOut | null>(null);
  const [form, setForm] = useState<Form | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [model, setModel] = useState<CheckResult | string | null>(null);
  const [sandbox, setSandbox] = useState<CheckResult | string | null>(null);
  const [testing, setTesting] = useState<"model" | "sandbox" | null>(null);

  useEffect(() => {
    api
      .getSettings()
      .then((s) => {
        setSaved(s);
        setForm(toForm(s));
      })
      .catch((e: unknown) => setError(errorText(e)));
  }, []);

  if (error && !form) return <div className="page"><div className="banner error" role="alert">{error}</div></div>;
  if (!form || !saved) return <div className="page muted">Loading settings…</div>;

  const set = (change: Partial<Form>) => {
    setMessage(null);
    setForm({ ...form, ...change });
  };
  const patch = toPatch(form, saved);
  const dirty = Object.keys(patch).length > 0;

  const save = async () => {
    setSaving(true);
    setError(null);
    try {
      const s = await api.patchSettings(patch);
      setSaved(s);
      setForm(toForm(s));
      setMessage("Saved. New turns use these settings.");
      onSaved(s);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setSaving(false);
    }
  };

  const test = async (which: "model" | "sandbox") => {
    const show = which === "model" ? setModel : setSandbox;
    setTesting(which);
    show(null);
    try {
      show(which === "model" ? await api.testModel(dirty ? patch : undefined) : await api.testSandbox(dirty ? patch : undefined));
    } catch (e) {
      show(errorText(e));
    } finally {
      setTesting(null);
    }
  };

  return (
    <div className="page settings-page">
      <h1>Settings</h1>
      {saved.auth === "token" ? <p className="muted">Signed-in mode ({saved.auth}): changing settings needs an admin user.</p> : null}
      {saved.auth === "none" ? <p className="muted">This server runs without a token (FLEET_AUTH=none): its settings are read-only here.</p> : null}
      <form
        aria-label="Settings"
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <fieldset>
          <legend>Models</legend>
          <Field label="Root model" hint="provider/name, e.g. openai/gpt-4o-mini; drives the agent and each RLM">
            <input aria-label="Root model" value={form.root_model} onChange={(e) => set({ root_model: e.target.value })} required />
          </Field>
          <Field label="Sub model" hint="for llm_query inside the sandbox; empty: the root model">
            <input aria-label="Sub model" value={form.sub_model} placeholder={form.root_model} onChange={(e) => set({ sub_model: e.target.value })} />
          </Field>
          <Field label="API base" hint="any OpenAI-compatible endpoint (Ollama, vLLM…); empty: the provider's">
            <input aria-label="API base" value={form.api_base} placeholder="https://…/v1" onChange={(e) => set({ api_base: e.target.value })} />
          </Field>
          <Field label="API key" hint={saved.api_key_set ? "A key is set. It is never shown; type a new one to replace it." : "No key set here; a provider variable such as OPENAI_API_KEY also works."}>
            <input
              aria-label="API key"
              type="password"
              autoComplete="off"
              value={form.api_key}
              placeholder={saved.api_key_set ? "•••••••• (set)" : "not set"}
              onChange={(e) => set({ api_key: e.target.value, clear_api_key: false })}
            />
          </Field>
          {saved.api_key_set ? (
            <label className="toggle">
              <input type="checkbox" aria-label="Remove the saved API key" checked={form.clear_api_key} onChange={(e) => set({ clear_api_key: e.target.checked, api_key: "" })} /> Remove the saved key
            </label>
          ) : null}
          <div className="actions">
            <button type="button" aria-label="Test model" onClick={() => void test("model")} disabled={testing !== null}>
              Test model
            </button>
            <Check result={model} busy={testing === "model"} name="model" />
          </div>
        </fieldset>
        <fieldset>
          <legend>Sandbox</legend>
          <Field label="Backend" hint="where model-written code runs">
            <select aria-label="Sandbox backend" value={form.sandbox} onChange={(e) => set({ sandbox: e.target.value as SandboxBackend })}>
              <option value="local">local (bubblewrap)</option>
              <option value="daytona">daytona</option>
              <option value="unsafe-local" disabled={saved.sandbox !== "unsafe-local"}>unsafe-local (no isolation; only FLEET_SANDBOX on the server sets it)</option>
            </select>
          </Field>
          {form.sandbox === "daytona" ? (
            <Field label="Daytona API key" hint={saved.daytona_api_key_set ? "A key is set; type a new one to replace it." : "not set"}>
              <input aria-label="Daytona API key" type="password" autoComplete="off" value={form.daytona_api_key} onChange={(e) => set({ daytona_api_key: e.target.value })} />
            </Field>
          ) : null}
          <div className="actions">
            <button type="button" aria-label="Test sandbox" onClick={() => void test("sandbox")} disabled={testing !== null}>
              Test sandbox
            </button>
            <Check result={sandbox} busy={testing === "sandbox"} name="sandbox" />
          </div>
        </fieldset>
        <fieldset>
          <legend>Budgets</legend>
          <div className="grid">
            {LIMITS.map((l) => (
              <Field key={l.key} label={l.label} hint={l.hint}>
                <input aria-label={l.label} type="number" min="0" step={l.step ?? "1"} value={form.limits[l.key] ?? ""} onChange={(e) => set({ limits: { ...form.limits, [l.key]: e.target.value } })} />
              </Field>
            ))}
          </div>
        </fieldset>
        {error ? <div className="banner error" role="alert">{error}</div> : null}
        {message ? <div className="banner ok" role="status">{message}</div> : null}
        <div className="actions sticky">
          <button type="submit" className="primary" aria-label="Save settings" disabled={!dirty || saving}>
            {saving ? "Saving…" : "Save"}
          </button>
          <button type="button" aria-label="Discard changes" disabled={!dirty} onClick={() => setForm(toForm(saved))}>
            Discard
          </button>
          {dirty ? <span className="muted">Unsaved changes (the tests use them).</span> : null}
        </div>
      </form>
    </div>
  );
}
