/* The REST API under /api/v1. Its types are generated from the OpenAPI document the server
serves (src/generated/api.ts); only what the document cannot say precisely (an event's or a
usage record's shape) is narrowed here, to the generated event types. */

import type { components, operations } from "../generated/api";
import type { FleetEvent, Usage } from "../generated/events";
import type { TurnFilters, UsageScope } from "../route";

export const API = "/api/v1";
const TOKEN_KEY = "fleet.token";

type Schemas = components["schemas"];

export type Session = Schemas["SessionOut"];
export type SessionList = Schemas["SessionList"];
export type Attachment = Schemas["Attachment"];
export type Turn = Omit<Schemas["TurnOut"], "usage"> & { usage: Usage | null };
export type FeedbackOut = Schemas["FeedbackOut"];
export type EventList = Omit<Schemas["EventList"], "events"> & { events: FleetEvent[] };
export type DocumentInfo = Schemas["DocumentOut"];
export type DocumentDetail = Schemas["DocumentDetail"];
export type WorkspaceEntry = Schemas["WorkspaceEntry"];
export type WorkspaceListing = Schemas["WorkspaceListing"];
export type SandboxBackend = Schemas["SettingsOut"]["sandbox"];
export type SettingsOut = Schemas["SettingsOut"];
export type SettingsPatch = Schemas["SettingsPatch"];
export type CheckResult = Schemas["CheckResult"];
export type UsageRow = Schemas["UsageRow"];
export type DatasetInfo = Schemas["DatasetOut"];
export type ProgramVersion = Schemas["ProgramVersionOut"];
export type Programs = Schemas["ProgramsOut"];
export type OptimisationRun = Schemas["RunOut"];
export type RunIn = Schemas["RunIn"];
export type UsageReport = Schemas["UsageReport"];

/** One model call as stored: its exact request and reply (GET /turns/{id}/calls/{call_id}). */
export type LmCallDetail = Schemas["LmCallDetail"];
/** A turn as the turns view lists it, across sessions. */
export type TurnSummary = Schemas["TurnSummary"];
export type TurnSearchPage = Schemas["TurnSearchPage"];
export type ModelUsageRow = Schemas["ModelUsageRow"];
export type ModelUsageReport = Schemas["ModelUsageReport"];
export type Health = operations["health_api_v1_health_get"]["responses"][200]["content"]["application/json"];

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(token: string | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** `fleet web` prints its address with `?token=`: keep that token, as one typed in the sign-in
 * dialog is kept, and take it out of the address bar and the history. */
export function adoptUrlToken(): void {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (!token) return;
  setToken(token);
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
}

const unauthorizedListeners = new Set<(message: string) => void>();

/** Called with the server's reason when it asks for a token (FLEET_AUTH=token): none was sent,
 * or the one sent is unknown or revoked. */
export function onUnauthorized(listener: (message: string) => void): () => void {
  unauthorizedListeners.add(listener);
  return () => unauthorizedListeners.delete(listener);
}

export function notifyUnauthorized(message: string): void {
  unauthorizedListeners.forEach((f) => f(message));
}

function authHeaders(token: string | null = getToken()): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The server's error body ({error, message}) as an ApiError; a 401 is announced. */
async function failure(response: Response, announce = true): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || `HTTP ${response.status}`;
  try {
    const data = (await response.json()) as { error?: string; message?: string };
    code = data.error ?? code;
    message = data.message ?? message;
  } catch {
    // not JSON: keep the status text
  }
  if (response.status === 401 && announce) notifyUnauthorized(message);
  return new ApiError(response.status, code, message);
}

async function reach(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", `The server cannot be reached (${String(e)}).`);
  }
}

/** Resolves when the server accepts the token; its own reason otherwise. */
export async function verifyToken(token: string): Promise<void> {
  const response = await reach(`${API}/sessions?limit=1`, { headers: authHeaders(token) });
  if (!response.ok) throw await failure(response, false);
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers = authHeaders();
  let payload: BodyInit | undefined;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await reach(API + path, { method, headers, body: payload });
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("content-type") ?? "";
  return (type.includes("json") ? await response.json() : await response.text()) as T;
}

const q = (params: Record<string, string | number | boolean | undefined>): string => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== "") s.set(k, String(v));
  const text = s.toString();
  return text ? `?${text}` : "";
};
const id = encodeURIComponent;

export const api = {
  listSessions: (query: string, limit = 100, offset = 0, includeArchived = false) =>
    request<SessionList>(
      "GET",
      `/sessions${q({ q: query, limit, offset, include_archived: includeArchived || undefined })}`,
    ),
  createSession: (title = "New session") => request<Session>("POST", "/sessions", { title }),
  getSession: (sessionId: string) => request<Session>("GET", `/sessions/${id(sessionId)}`),
  renameSession: (sessionId: string, title: string) =>
    request<Session>("PATCH", `/sessions/${id(sessionId)}`, { title }),
  archiveSession: (sessionId: string, archived: boolean) =>
    request<Session>("PATCH", `/sessions/${id(sessionId)}`, { archived }),
  /** The session's own models from its next turn on; null: the server's. */
  setSessionModels: (sessionId: string, rootModel: string | null, subModel: string | null) =>
    request<Session>("PATCH", `/sessions/${id(sessionId)}`, { root_model: rootModel, sub_model: subModel }),
  /** One tiny call to each model (those given, else the session's). */
  testSessionModels: (sessionId: string, rootModel: string | null, subModel: string | null) =>
    request<CheckResult>("POST", `/sessions/${id(sessionId)}/test-model`, { root_model: rootModel, sub_model: subModel }),
  deleteSession: (sessionId: string) => request<undefined>("DELETE", `/sessions/${id(sessionId)}`),
  exportUrl: (sessionId: string, format: "json" | "markdown") =>
    `${API}/sessions/${id(sessionId)}/export${q({ format })}`,
  exportSession: (sessionId: string, format: "json" | "markdown") =>
    request<unknown>("GET", `/sessions/${id(sessionId)}/export${q({ format })}`),

  getTurn: (turnId: string) => request<Turn>("GET", `/turns/${id(turnId)}`),
  listTurns: (sessionId: string) => request<Turn[]>("GET", `/sessions/${id(sessionId)}/turns`),
  turnEvents: (turnId: string, afterSeq = 0) =>
    request<EventList>("GET", `/turns/${id(turnId)}/events${q({ after_seq: afterSeq })}`),
  /** 409 when the server has no tracing, or the turn no trace. */
  sendFeedback: (turnId: string, thumbsUp: boolean, comment: string | null, correctedAnswer: string | null = null) =>
    request<FeedbackOut>("POST", `/turns/${id(turnId)}/feedback`, {
      thumbs_up: thumbsUp,
      comment,
      corrected_answer: correctedAnswer,
    }),

  uploadDocument: (sessionId: string, file: File) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return request<DocumentInfo>("POST", `/sessions/${id(sessionId)}/documents`, form);
  },
  listDocuments: (sessionId: string) =>
    request<DocumentInfo[]>("GET", `/sessions/${id(sessionId)}/documents`),
  getDocument: (documentId: string) =>
    request<DocumentDetail>("GET", `/documents/${id(documentId)}`),
  deleteDocument: (documentId: string) => request<undefined>("DELETE", `/documents/${id(documentId)}`),
  /** Detach (false: kept, out of the agent's view) or attach a document again (true). */
  setDocumentAttached: (documentId: string, attached: boolean) =>
    request<DocumentInfo>("PATCH", `/documents/${id(documentId)}`, { attached }),

  workspace: (sessionId: string, path = "") =>
    request<WorkspaceListing>("GET", `/sessions/${id(sessionId)}/workspace${q({ path })}`),
  /** The file as text, whatever its type (previews show text). */
  readWorkspaceFile: async (sessionId: string, path: string): Promise<string> => {
    const url = `${API}/sessions/${id(sessionId)}/workspace/file${q({ path })}`;
    const response = await reach(url, { headers: authHeaders() });
    if (!response.ok) throw await failure(response);
    return response.text();
  },
  /** The file's bytes. */
  readWorkspaceBlob: async (sessionId: string, path: string): Promise<Blob> => {
    const url = `${API}/sessions/${id(sessionId)}/workspace/file${q({ path })}`;
    const response = await reach(url, { headers: authHeaders() });
    if (!response.ok) throw await failure(response);
    return response.blob();
  },
  workspaceFileUrl: (sessionId: string, path: string) =>
    `${API}/sessions/${id(sessionId)}/workspace/file${q({ path })}`,
  writeWorkspaceFile: async (sessionId: string, path: string, content: Blob) => {
    const url = `${API}/sessions/${id(sessionId)}/workspace/file${q({ path })}`;
    const headers = { ...authHeaders(), "Content-Type": "application/octet-stream" };
    const response = await reach(url, { method: "PUT", headers, body: content });
    if (!response.ok) throw await failure(response);
  },
  deleteWorkspaceFile: (sessionId: string, path: string) =>
    request<undefined>("DELETE", `/sessions/${id(sessionId)}/workspace/file${q({ path })}`),

  getSettings: () => request<SettingsOut>("GET", "/settings"),
  patchSettings: (patch: SettingsPatch) => request<SettingsOut>("PATCH", "/settings", patch),
  /** With a patch: tests those values before they are saved. */
  testModel: (patch?: SettingsPatch) => request<CheckResult>("POST", "/settings/test-model", patch),
  testSandbox: (patch?: SettingsPatch) =>
    request<CheckResult>("POST", "/settings/test-sandbox", patch),

  /** A reference implementation's trajectory log as a read-only session; 422 `invalid_log`
   * names the line and what was expected there. */
  importRlmLog: (file: File) => {
    const form = new FormData();
    form.append("file", file, file.name);
    return request<Session>("POST", "/imports/rlm-log", form);
  },
  callDetail: (turnId: string, callId: string) =>
    request<LmCallDetail>("GET", `/turns/${id(turnId)}/calls/${id(callId)}`),
  searchTurns: (filters: TurnFilters, limit = 50, cursor?: string) =>
    request<TurnSearchPage>("GET", `/turns${q({ ...filters, limit, cursor })}`),
  setTurnTags: (turnId: string, tags: string[]) =>
    request<Turn>("PUT", `/turns/${id(turnId)}/tags`, { tags } satisfies Schemas["TurnTags"]),
  usageByModel: (scope: UsageScope) =>
    request<ModelUsageReport>(
      "GET",
      `/usage/models${q(
        scope.kind === "turn"
          ? { turn_id: scope.turnId }
          : scope.kind === "session"
            ? { session_id: scope.sessionId }
            : { since: scope.since, until: scope.until },
      )}`,
    ),

  usage: (group: "session" | "day") => request<UsageReport>("GET", `/usage${q({ group })}`),

  datasets: () => request<DatasetInfo[]>("GET", "/optimise/datasets"),
  programs: () => request<Programs>("GET", "/programs"),
  runs: () => request<OptimisationRun[]>("GET", "/optimise/runs"),
  startRun: (body: RunIn) => request<OptimisationRun>("POST", "/optimise/runs", body),
  promote: (versionId: string) => request<Programs>("POST", `/programs/${id(versionId)}/promote`),
  rollback: (target: "agent" | "rlm") => request<Programs>("POST", `/programs/targets/${target}/rollback`),
  health: () => request<Health>("GET", "/health"),
};

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
