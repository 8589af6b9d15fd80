import { describe, expect, it } from "vitest";

import { parseCsv, previewOf } from "./csv";

describe("parseCsv", () => {
  it("reads quoted fields, doubled quotes, commas and line breaks inside quotes", () => {
    const text = 'name,note\r\n"Smith, J.","said ""hi""\nthen left"\nplain,\n';
    expect(parseCsv(text).rows).toEqual([
      ["name", "note"],
      ["Smith, J.", 'said "hi"\nthen left'],
      ["plain", ""],
    ]);
  });

  it("keeps a last row without a newline and stops at the row limit", () => {
    expect(parseCsv("a,b\n1,2").rows).toEqual([["a", "b"], ["1", "2"]]);
    const many = Array.from({ length: 50 }, (_, i) => `${i}`).join("\n");
    const { rows, more } = parseCsv(many, 5);
    expect(rows).toHaveLength(5);
    expect(more).toBe(true);
    expect(parseCsv("x\ny", 5).more).toBe(false);
  });
});

describe("previewOf", () => {
  it("shows images (SVG too, as an image), tables and Markdown; the rest only downloads", () => {
    expect(previewOf("image/png")).toBe("image");
    expect(previewOf("image/svg+xml")).toBe("image");
    expect(previewOf("text/csv")).toBe("table");
    expect(previewOf("text/markdown")).toBe("markdown");
    expect(previewOf("text/html")).toBe("none");
    expect(previewOf("application/octet-stream")).toBe("none");
  });
});
