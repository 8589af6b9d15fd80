/* A session's documents and workspace files: browse, preview, upload, delete. */

import { useCallback, useEffect, useRef, useState } from "react";

import { api, errorText, type DocumentInfo, type Session, type WorkspaceEntry } from "../api/client";
import { fmtBytes, fmtDate } from "../ui/format";
import { Icon } from "../ui/Icon";

const PREVIEW_BYTES = 200_000;

interface Preview {
  title: string;
  text: string;
  note?: string;
}

function Documents({ sessionId, onPreview, setError }: { sessionId: string; onPreview: (p: Preview) => void; setError: (e: string | null) => void }) {
  const [docs, setDocs] = useState<DocumentInfo[]>([]);
  const input = useRef<HTMLInputElement>(null);
  const reload = useCallback(() => {
    api.listDocuments(sessionId).then(setDocs, (e: unknown) => setError(errorText(e)));
  }, [sessionId, setError]);
  useEffect(reload, [reload]);

  const upload = async (files: File[]) => {
    setError(null);
    for (const f of files) {
      try {
        await api.uploadDocument(sessionId, f);
      } catch (e) {
        setError(`${f.name}: ${errorText(e)}`);
      }
    }
    reload();
  };

  return (
    <section className="card" aria-label="Documents">
      <header className="card-head">
        <h2>Documents</h2>
        <button type="button" aria-label="Upload documents" onClick={() => input.current?.click()}>
          Upload…
        </button>
        <input ref={input} type="file" multiple hidden aria-label="Choose documents to upload" data-testid="documents-file-input" onChange={(e) => {
          const files = Array.from(e.target.files ?? []);
          e.target.value = "";
          void upload(files);
        }} />
      </header>
      {docs.length ? (
        <table className="table" aria-label="Documents of the session">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Kind</th>
              <th scope="col">Size</th>
              <th scope="col">Characters</th>
              <th scope="col">Added</th>
              <th scope="col"><span className="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {docs.map((d) => (
              <tr key={d.id} data-testid="document-row">
                <td>
                  <button type="button" className="link" aria-label={`Preview document ${d.name}`} onClick={() => {
                    api.getDocument(d.id).then(
                      (full) => onPreview({ title: d.name, text: full.text, note: full.text.length < d.chars ? `first ${full.text.length.toLocaleString()} of ${d.chars.toLocaleString()} characters` : undefined }),
                      (e: unknown) => setError(errorText(e)),
                    );
                  }}>
                    {d.name}
                  </button>
                  {d.attached ? null : <span className="chip" title="Kept, but not shown to the agent">detached</span>}
                  {d.encoding ? <span className="muted"> · from {d.encoding}</span> : null}
                </td>
                <td>{d.kind}</td>
                <td>{fmtBytes(d.size_bytes)}</td>
                <td>{d.chars.toLocaleString()}</td>
                <td>{fmtDate(d.created_at)}</td>
                <td>
                  <button type="button" className="icon danger" aria-label={`Delete document ${d.name}`} onClick={() => {
                    if (!confirm(`Delete the document ${d.name}?`)) return;
                    api.deleteDocument(d.id).then(reload, (e: unknown) => setError(errorText(e)));
                  }}>
                    <Icon name="trash" size={14} />
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">No documents. Upload text, Markdown, PDF, JSON, CSV or HTML.</p>
      )}
    </section>
  );
}

function Workspace({ sessionId, onPreview, setError }: { sessionId: string; onPreview: (p: Preview) => void; setError: (e: string | null) => void }) {
  const [path, setPath] = useState("");
  const [entries, setEntries] = useState<WorkspaceEntry[]>([]);
  const input = useRef<HTMLInputElement>(null);
  const reload = useCallback(() => {
    api.workspace(sessionId, path).then(
      (l) => setEntries(l.entries),
      (e: unknown) => {
        setEntries([]);
        setError(errorText(e));
      },
    );
  }, [sessionId, path, setError]);
  useEffect(reload, [reload]);
  useEffect(() => setPath(""), [sessionId]);

  const crumbs = path ? path.split("/") : [];
  const upload = async (files: File[]) => {
    for (const f of files) {
      try {
        await api.writeWorkspaceFile(sessionId, path ? `${path}/${f.name}` : f.name, f);
      } catch (e) {
        setError(`${f.name}: ${errorText(e)}`);
      }
    }
    reload();
  };

  return (
    <section className="card" aria-label="Workspace files">
      <header className="card-head">
        <h2>Workspace</h2>
        <nav aria-label="Workspace path" className="crumbs">
          <button type="button" className="link" aria-label="Workspace root" onClick={() => setPath("")}>/work</button>
          {crumbs.map((c, i) => (
            <span key={i}>
              /<button type="button" className="link" aria-label={`Open folder ${c}`} onClick={() => setPath(crumbs.slice(0, i + 1).join("/"))}>{c}</button>
            </span>
          ))}
        </nav>
        <button type="button" aria-label="Upload files to the workspace" onClick={() => input.current?.click()}>
          Upload…
        </button>
        <input ref={input} type="file" multiple hidden aria-label="Choose files for the workspace" onChange={(e) => {
          const files = Array.from(e.target.files ?? []);
          e.target.value = "";
          void upload(files);
        }} />
        <button type="button" className="icon" aria-label="Refresh the workspace listing" onClick={reload}><Icon name="refresh" /></button>
      </header>
      {entries.length ? (
        <ul className="files">
          {entries.map((e) => (
            <li key={e.path} data-testid="workspace-entry">
              {e.type === "dir" ? (
                <button type="button" className="link" aria-label={`Open folder ${e.name}`} onClick={() => setPath(e.path)}><Icon name="folder" size={13} /> {e.name}/</button>
              ) : (
                <button type="button" className="link" aria-label={`Preview file ${e.name}`} onClick={() => {
                  api.readWorkspaceFile(sessionId, e.path).then(
                    (text) => onPreview({ title: e.path, text: text.slice(0, PREVIEW_BYTES), note: text.length > PREVIEW_BYTES ? `first ${PREVIEW_BYTES.toLocaleString()} characters` : undefined }),
                    (err: unknown) => setError(errorText(err)),
                  );
                }}><Icon name="file" size={13} /> {e.name}</button>
              )}
              <span className="muted">{e.type === "file" ? fmtBytes(e.size) : e.type}</span>
              <span className="muted">{fmtDate(e.modified)}</span>
              {e.protected ? (
                <span className="protected" title="The service keeps the session's saved variables here: it cannot be deleted">
                  <Icon name="lock" size={13} /><span className="sr-only">kept by the service</span>
                </span>
              ) : (
                <button type="button" className="icon danger" aria-label={`Delete ${e.type === "dir" ? "folder" : "file"} ${e.name}`} onClick={() => {
                  if (!confirm(`Delete ${e.path}?`)) return;
                  api.deleteWorkspaceFile(sessionId, e.path).then(reload, (err: unknown) => setError(errorText(err)));
                }}><Icon name="trash" size={14} /></button>
              )}
            </li>
          ))}
        </ul>
      ) : (
        <p className="muted">Empty. Code in the session's python sandbox writes files here.</p>
      )}
    </section>
  );
}

export function DocumentsPage({ sessions, sessionId, onSession }: { sessions: Session[]; sessionId: string | null; onSession: (id: string) => void }) {
  const [preview, setPreview] = useState<Preview | null>(null);
  const [error, setError] = useState<string | null>(null);
  return (
    <div className="page documents-page">
      <h1>Documents &amp; files</h1>
      <div className="toolbar">
        <label className="field inline">
          <span className="field-label">Session</span>
          <select aria-label="Session whose documents are shown" value={sessionId ?? ""} onChange={(e) => {
            setPreview(null);
            onSession(e.target.value);
          }}>
            {!sessionId ? <option value="">Choose a session</option> : null}
            {sessions.map((s) => (
              <option key={s.id} value={s.id}>{s.title}</option>
            ))}
          </select>
        </label>
      </div>
      {error ? <div className="banner error" role="alert">{error} <button type="button" className="icon" aria-label="Dismiss" onClick={() => setError(null)}><Icon name="close" /></button></div> : null}
      {sessionId ? (
        <div className="documents-grid">
          <div>
            <Documents sessionId={sessionId} onPreview={setPreview} setError={setError} />
            <Workspace sessionId={sessionId} onPreview={setPreview} setError={setError} />
          </div>
          <section className="card preview-pane" aria-label="Preview">
            <header className="card-head">
              <h2>{preview ? preview.title : "Preview"}</h2>
              {preview ? <button type="button" className="icon" aria-label="Close the preview" onClick={() => setPreview(null)}><Icon name="close" /></button> : null}
            </header>
            {preview ? (
              <>
                {preview.note ? <p className="muted small">{preview.note}</p> : null}
                <pre className="preview big" data-testid="preview">{preview.text}</pre>
              </>
            ) : (
              <p className="muted">Choose a document or a file to see its text.</p>
            )}
          </section>
        </div>
      ) : (
        <p className="muted">Create or choose a session first.</p>
      )}
    </div>
  );
}
