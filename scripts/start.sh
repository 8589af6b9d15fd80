#!/usr/bin/env bash
# Starts the fleet-rlm workspace, installing what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
UV="uv"; command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
$UV run fleet doctor
exec $UV run fleet --help
