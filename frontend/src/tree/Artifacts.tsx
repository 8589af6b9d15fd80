/* Files a turn's code wrote under artifacts/ (artifact events): previews under the step that
wrote them and with the answer, and a download. Images show as <img> of a blob: URL made from
the bytes (an SVG's scripts never run in an <img>, and it is never inlined as markup); CSV as a
table of its first rows; Markdown rendered without raw HTML. */

import { createContext, useContext, useEffect, useState } from "react";

import { api, errorText } from "../api/client";
import type { ArtifactEvent } from "../generated/events";
import { Markdown } from "../ui/Deferred";
import { download } from "../ui/download";
import { fmtBytes } from "../ui/format";
import { Icon } from "../ui/Icon";
import { parseCsv, previewOf } from "./csv";

/** The open session, whose workspace holds the files. */
export const SessionIdContext = createContext<string | null>(null);

const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
const MAX_TEXT_BYTES = 1024 * 1024;

function useFile(sessionId: string | null, artifact: ArtifactEvent, wanted: boolean): { blob: Blob | null; error: string | null } {
  const [state, setState] = useState<{ blob: Blob | null; error: string | null }>({ blob: null, error: null });
  useEffect(() => {
    if (!sessionId || !wanted) return;
    let live = true;
    api.readWorkspaceBlob(sessionId, artifact.path).then(
      (blob) => live && setState({ blob, error: null }),
      (e: unknown) => live && setState({ blob: null, error: errorText(e) }),
    );
    return () => {
      live = false;
    };
  }, [sessionId, artifact.path, artifact.seq, wanted]);
  return state;
}

function ImagePreview({ blob, artifact }: { blob: Blob; artifact: ArtifactEvent }) {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    // The server sends active types (SVG) as text/plain; the image gets its own type back here.
    const made = URL.createObjectURL(new Blob([blob], { type: artifact.media_type }));
    setUrl(made);
    return () => URL.revokeObjectURL(made);
  }, [blob, artifact.media_type]);
  return url ? <img className="artifact-image" src={url} alt={artifact.path} /> : null;
}

function TablePreview({ blob }: { blob: Blob }) {
  const [table, setTable] = useState<{ rows: string[][]; more: boolean } | null>(null);
  useEffect(() => {
    let live = true;
    void blob.text().then((text) => live && setTable(parseCsv(text)));
    return () => {
      live = false;
    };
  }, [blob]);
  if (!table) return null;
  const [head, ...body] = table.rows;
  return (
    <div className="artifact-table">
      <table>
        {head ? <thead><tr>{head.map((c, i) => <th key={i}>{c}</th>)}</tr></thead> : null}
        <tbody>{body.map((r, i) => <tr key={i}>{r.map((c, j) => <td key={j}>{c}</td>)}</tr>)}</tbody>
      </table>
      {table.more ? <p className="muted small">First rows only: download for the rest.</p> : null}
    </div>
  );
}

function MarkdownPreview({ blob }: { blob: Blob }) {
  const [text, setText] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    void blob.text().then((t) => live && setText(t));
    return () => {
      live = false;
    };
  }, [blob]);
  return text === null ? null : <Markdown text={text} />;
}

export function ArtifactView({ artifact }: { artifact: ArtifactEvent }) {
  const sessionId = useContext(SessionIdContext);
  const preview = previewOf(artifact.media_type);
  const small = artifact.size_bytes <= (preview === "image" ? MAX_IMAGE_BYTES : MAX_TEXT_BYTES);
  const { blob, error } = useFile(sessionId, artifact, preview !== "none" && small);
  const [downloadError, setDownloadError] = useState<string | null>(null);
  const name = artifact.path.split("/").at(-1) ?? artifact.path;
  return (
    <figure className="artifact" data-testid="artifact" data-path={artifact.path} data-preview={preview}>
      <figcaption>
        <Icon name="file" size={13} /> <span className="artifact-path">{artifact.path}</span> <span className="muted">{fmtBytes(artifact.size_bytes)}</span>
        <button type="button" className="icon" aria-label={`Download ${artifact.path}`} title="Download" disabled={!sessionId} onClick={() => {
          if (!sessionId) return;
          setDownloadError(null);
          download(api.workspaceFileUrl(sessionId, artifact.path), name).catch((e: unknown) => setDownloadError(errorText(e)));
        }}>
          <Icon name="download" size={13} />
        </button>
      </figcaption>
      {blob && preview === "image" ? <ImagePreview blob={blob} artifact={artifact} /> : null}
      {blob && preview === "table" ? <TablePreview blob={blob} /> : null}
      {blob && preview === "markdown" ? <MarkdownPreview blob={blob} /> : null}
      {error || downloadError ? <p className="error-text">{error ?? downloadError}</p> : null}
    </figure>
  );
}

export function ArtifactList({ artifacts, label }: { artifacts: readonly ArtifactEvent[]; label: string }) {
  if (!artifacts.length) return null;
  return (
    <div className="artifacts" aria-label={label}>
      {artifacts.map((a) => <ArtifactView key={`${a.seq}-${a.path}`} artifact={a} />)}
    </div>
  );
}
