#!/usr/bin/env bash
# Starts the fleet-rlm workspace: installs what is missing (uv, bubblewrap, the Python
# environment), builds the web app when it is missing or outdated, then runs `fleet web`.
# Extra arguments go to `fleet web` (e.g. --port 8080 --open).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-frontend.sh
UV="uv"; command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
exec $UV run fleet web "$@"
