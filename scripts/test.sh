#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing (uv, bubblewrap, gVisor's runsc, Chromium,
# the Python environment with every extra, the web app's packages), starts PostgreSQL if it is
# down, then runs the web app's lint, type drift check and unit tests, ruff and mypy on the Python
# sources, and pytest (unit, integration and browser tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
FLEET_SYNC_ARGS="--all-extras --group bench" scripts/setup.sh chromium runsc
if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
scripts/build-frontend.sh
UV="uv"; command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
(cd frontend && npm run --silent lint && npm run --silent check:types && npm test --silent)
$UV run ruff check src tests
$UV run mypy src
exec $UV run pytest "$@"
