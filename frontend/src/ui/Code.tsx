import hljs from "highlight.js/lib/core";
import bash from "highlight.js/lib/languages/bash";
import javascript from "highlight.js/lib/languages/javascript";
import json from "highlight.js/lib/languages/json";
import python from "highlight.js/lib/languages/python";
import sql from "highlight.js/lib/languages/sql";
import typescript from "highlight.js/lib/languages/typescript";
import yaml from "highlight.js/lib/languages/yaml";
import { useMemo } from "react";

import { CopyButton } from "./CopyButton";

// A handful of grammars keeps the bundle small; other languages show as plain text.
for (const [name, grammar] of Object.entries({ python, json, bash, javascript, typescript, sql, yaml })) {
  hljs.registerLanguage(name, grammar);
}
hljs.registerAliases(["py"], { languageName: "python" });
hljs.registerAliases(["sh", "shell", "console"], { languageName: "bash" });
hljs.registerAliases(["js", "jsx"], { languageName: "javascript" });
hljs.registerAliases(["ts", "tsx"], { languageName: "typescript" });
hljs.registerAliases(["yml"], { languageName: "yaml" });

/** Highlighted HTML (highlight.js escapes the text), or null for an unknown language. */
export function highlight(code: string, language: string): string | null {
  if (!hljs.getLanguage(language)) return null;
  return hljs.highlight(code, { language, ignoreIllegals: true }).value;
}

export function Code({ code, language = "python", label }: { code: string; language?: string; label?: string }) {
  const html = useMemo(() => highlight(code, language), [code, language]);
  return (
    <div className="code-block">
      <pre className="code" aria-label={label ?? `${language} code`}>
        {html === null ? <code>{code}</code> : <code className="hljs" dangerouslySetInnerHTML={{ __html: html }} />}
      </pre>
      <CopyButton text={code} label={`Copy ${label ?? "code"}`} />
    </div>
  );
}
