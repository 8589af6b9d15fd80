import { memo } from "react";
import ReactMarkdown, { type Components } from "react-markdown";
import remarkGfm from "remark-gfm";

import { highlight } from "./Code";
import { CopyButton } from "./CopyButton";

type HastNode = { type: string; value?: string; children?: HastNode[] };

function toText(node: HastNode): string {
  return node.type === "text" ? (node.value ?? "") : (node.children ?? []).map(toText).join("");
}

const components: Components = {
  // Fenced code blocks get a copy button; the text copied is the code as written.
  pre: ({ node, children, ...props }) => {
    const code = node?.children[0];
    const text = code && code.type === "element" ? toText(code) : "";
    return (
      <div className="code-block">
        <pre {...props}>{children}</pre>
        <CopyButton text={text.replace(/\n$/, "")} label="Copy code" />
      </div>
    );
  },
  a: ({ node: _node, ...props }) => <a {...props} target="_blank" rel="noreferrer noopener" />,
  code: ({ node: _node, className, children, ...props }) => {
    const language = /language-([\w-]+)/.exec(className ?? "")?.[1];
    const html = language ? highlight(String(children).replace(/\n$/, ""), language) : null;
    if (html === null) return <code className={className} {...props}>{children}</code>;
    return <code className={`hljs ${className ?? ""}`} dangerouslySetInnerHTML={{ __html: html }} />;
  },
};

/** Markdown as the model wrote it: GitHub flavour, fenced code highlighted, raw HTML not rendered. */
export const Markdown = memo(function Markdown({ text }: { text: string }) {
  return (
    <div className="markdown">
      <ReactMarkdown remarkPlugins={[remarkGfm]} components={components}>
        {text}
      </ReactMarkdown>
    </div>
  );
});
