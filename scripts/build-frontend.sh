#!/usr/bin/env bash
# Build the web app into src/fleet_rlm/server/static (served by `fleet web`) when needed: when
# the build is missing or older than any source or config file, `npm ci` (when node_modules is
# missing or older than package-lock.json) and `npm run build`. Quick and quiet when up to date,
# and then needs no Node at all (an sdist carries its build). The package build runs this too
# (hatch_build.py), so wheels and sdists ship the app.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
web="$root/frontend"
static="$root/src/fleet_rlm/server/static"
cd "$web"

stamp="$static/index.html"
# Files only: directories unpacked from an sdist are as new as the unpacking.
inputs=(src index.html package.json package-lock.json vite.config.ts tsconfig.json)
[ -d public ] && inputs+=(public)
if [ -f "$stamp" ] && [ -z "$(find "${inputs[@]}" -type f -newer "$stamp" -print -quit)" ]; then
  echo "build-frontend: up to date (${static#"$root"/})"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "build-frontend: npm is not installed; the web app needs Node.js 20.19 or newer" >&2
  exit 1
fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "build-frontend: installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
echo "build-frontend: building the web app into ${static#"$root"/}"
npm run build
touch "$stamp"
