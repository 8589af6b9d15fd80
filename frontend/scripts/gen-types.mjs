// Generates the TypeScript types of everything the web app exchanges with the server, so they
// cannot drift from it:
//   src/generated/events.ts  the events (fleet_rlm.events), by json-schema-to-typescript
//   src/generated/frames.ts  the WebSocket's other frames, both ways (fleet_rlm.server.frames)
//   src/generated/api.ts     the REST API, from the OpenAPI document the server serves at
//                            /api/v1/openapi.json, by openapi-typescript
// `--check` fails if a checked-in file differs from a fresh generation.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";
import openapiTS, { astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const generated = resolve(here, "../src/generated");
const check = process.argv.includes("--check");

// One Python run gives the three schemas.
const python = `
import json
from fleet_rlm.events import event_json_schema
from fleet_rlm.server.app import create_app
from fleet_rlm.server.frames import frames_json_schema
print(json.dumps({"events": event_json_schema(), "frames": frames_json_schema(),
                  "openapi": create_app().openapi()}))
`;
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
const schemas = JSON.parse(output);

// Property titles would each become a named alias (TurnId1, TurnId2, ...): types come inline
// instead, and the models are named by their $defs keys.
function dropTitles(node) {
  if (Array.isArray(node)) node.forEach(dropTitles);
  else if (node && typeof node === "object") {
    delete node.title;
    Object.values(node).forEach(dropTitles);
  }
}

const banner = (source) =>
  `/* Generated from ${source} by \`npm run gen:types\`. Do not edit: change the Python models\n` +
  " * and regenerate; `npm run check:types` fails when this file is stale. */";

async function fromJsonSchema(schema, name, source) {
  dropTitles(schema);
  schema.title = name;
  return compile(schema, name, {
    bannerComment: banner(source),
    additionalProperties: false,
    unreachableDefinitions: true,
    style: { singleQuote: false, printWidth: 100 },
  });
}

// The served document's version is the package's: it says nothing about the types.
schemas.openapi.info.version = "";
const api =
  `${banner("fleet_rlm.server.app (OpenAPI)")}\n\n` +
  astToString(await openapiTS(schemas.openapi, { exportType: true, alphabetize: true }));

const files = {
  "events.ts": [await fromJsonSchema(schemas.events, "FleetEvent", "fleet_rlm.events"), "fleet_rlm.events"],
  "frames.ts": [
    await fromJsonSchema(schemas.frames, "WebSocketFrame", "fleet_rlm.server.frames"),
    "fleet_rlm.server.frames",
  ],
  "api.ts": [api, "the server's OpenAPI document"],
};

let stale = 0;
for (const [name, [text, source]] of Object.entries(files)) {
  const target = resolve(generated, name);
  if (check) {
    let current = null;
    try {
      current = readFileSync(target, "utf8");
    } catch {
      // missing: stale
    }
    if (current !== text) {
      console.error(`src/generated/${name} is out of date with ${source}: run \`npm run gen:types\`.`);
      stale += 1;
    } else console.log(`src/generated/${name} matches ${source}`);
  } else {
    writeFileSync(target, text);
    console.log(`wrote ${target}`);
  }
}
if (stale) process.exit(1);
