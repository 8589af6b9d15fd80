// Generates src/generated/events.ts from the Python event models (fleet_rlm.events), so the
// TypeScript types cannot drift from what the server sends. `--check` fails if the checked-in
// file differs from a fresh generation.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const target = resolve(here, "../src/generated/events.ts");
const check = process.argv.includes("--check");

const python =
  "import json; from fleet_rlm.events import event_json_schema; print(json.dumps(event_json_schema()))";
// uv may be on PATH or only importable (`python3 -m uv`); UV="..." picks another.
const runners = process.env.UV ? [process.env.UV.split(" ")] : [["uv"], ["python3", "-m", "uv"]];
let output = null;
for (const [command, ...prefix] of runners) {
  try {
    output = execFileSync(command, [...prefix, "run", "--quiet", "python", "-c", python], {
      cwd: repo,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    break;
  } catch (e) {
    if (e.code !== "ENOENT") throw e;
  }
}
if (output === null) throw new Error("uv not found: install it, or set UV to the command that runs it");
const schema = JSON.parse(output);
// Property titles would each become a named alias (TurnId1, TurnId2, ...): types come inline
// instead, and the models are named by their $defs keys.
function dropTitles(node) {
  if (Array.isArray(node)) node.forEach(dropTitles);
  else if (node && typeof node === "object") {
    delete node.title;
    Object.values(node).forEach(dropTitles);
  }
}
dropTitles(schema);
schema.title = "FleetEvent";

const banner =
  "/* Generated from fleet_rlm.events by `npm run gen:types`. Do not edit: change the Python models\n" +
  " * and regenerate; `npm run check:types` fails when this file is stale. */";
const ts = await compile(schema, "FleetEvent", {
  bannerComment: banner,
  additionalProperties: false,
  unreachableDefinitions: false,
  style: { singleQuote: false, printWidth: 100 },
});

if (check) {
  const current = readFileSync(target, "utf8");
  if (current !== ts) {
    console.error(
      "src/generated/events.ts is out of date with fleet_rlm.events: run `npm run gen:types`.",
    );
    process.exit(1);
  }
  console.log("src/generated/events.ts matches fleet_rlm.events");
} else {
  writeFileSync(target, ts);
  console.log(`wrote ${target}`);
}
