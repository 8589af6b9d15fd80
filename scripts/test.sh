#!/usr/bin/env bash
# Runs the whole test suite, installing what is missing and starting PostgreSQL if it is down.
set -euo pipefail
cd "$(dirname "$0")/.."
FLEET_SYNC_ARGS="--all-extras" scripts/setup.sh
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
UV="uv"; command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
exec $UV run pytest "$@"
