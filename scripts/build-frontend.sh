#!/usr/bin/env bash
# Build the web app into src/fleet_rlm/server/static (served by `fleet web`) when needed:
# `npm ci` when node_modules is missing or older than package-lock.json, `npm run build` when the
# build is missing or older than any source or config file. Quick and quiet when up to date.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
web="$root/frontend"
static="$root/src/fleet_rlm/server/static"

if ! command -v npm >/dev/null 2>&1; then
  echo "build-frontend: npm is not installed; the web app needs Node.js 20.19 or newer" >&2
  exit 1
fi
cd "$web"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "build-frontend: installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi

stamp="$static/index.html"
inputs=(src index.html package.json package-lock.json vite.config.ts tsconfig.json)
[ -d public ] && inputs+=(public)
if [ ! -f "$stamp" ] || [ -n "$(find "${inputs[@]}" -newer "$stamp" -print -quit)" ]; then
  echo "build-frontend: building the web app into ${static#"$root"/}"
  npm run build
  touch "$stamp"
else
  echo "build-frontend: up to date (${static#"$root"/})"
fi
