/** The first rows of CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF), for a
 * preview: at most `maxRows` rows; `more` says whether the text had others. */
export function parseCsv(text: string, maxRows = 20): { rows: string[][]; more: boolean } {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  let i = 0;
  const endRow = () => {
    row.push(field);
    rows.push(row);
    row = [];
    field = "";
  };
  while (i < text.length) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i += 1;
      continue;
    }
    if (c === '"' && field === "") quoted = true;
    else if (c === ",") {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      endRow();
      if (rows.length > maxRows) return { rows: rows.slice(0, maxRows), more: true };
    } else field += c;
    i += 1;
  }
  if (field !== "" || row.length) endRow();
  return { rows: rows.slice(0, maxRows), more: rows.length > maxRows };
}

/** How a file a turn wrote is previewed, by its media type. */
export type ArtifactPreview = "image" | "table" | "markdown" | "none";

export function previewOf(mediaType: string): ArtifactPreview {
  if (/^image\/(png|jpeg|gif|webp|svg\+xml)$/.test(mediaType)) return "image";
  if (mediaType === "text/csv") return "table";
  if (mediaType === "text/markdown") return "markdown";
  return "none";
}
