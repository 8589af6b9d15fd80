import { lazy, Suspense } from "react";

// Markdown (react-markdown, remark-gfm) and highlight.js are most of the bundle and the first
// screen needs neither: they load with the first answer or code cell, and until then the text
// shows as it is.
const MarkdownView = lazy(() => import("./Markdown").then((m) => ({ default: m.Markdown })));
const CodeView = lazy(() => import("./Code").then((m) => ({ default: m.Code })));

export function Markdown({ text }: { text: string }) {
  return (
    <Suspense fallback={<div className="markdown plain">{text}</div>}>
      <MarkdownView text={text} />
    </Suspense>
  );
}

export function Code({ code, language = "python", label }: { code: string; language?: string; label?: string }) {
  return (
    <Suspense fallback={<pre className="code" aria-label={label ?? `${language} code`}><code>{code}</code></pre>}>
      <CodeView code={code} language={language} label={label} />
    </Suspense>
  );
}
