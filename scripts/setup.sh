#!/usr/bin/env bash
# Installs what fleet-rlm needs on a fresh Debian/Ubuntu machine, then syncs the Python env.
# Safe to run repeatedly: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
# The sandbox's disk quota (an ext4 image per workspace) and its seccomp filter (libseccomp).
command -v mkfs.ext4 >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 \
  >/dev/null 2>&1 || need_apt+=(e2fsprogs)
ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || need_apt+=(libseccomp2)
for pkg in "$@"; do
  case "$pkg" in
    chromium) command -v chromium >/dev/null 2>&1 || need_apt+=(chromium) ;;
    runsc) command -v runsc >/dev/null 2>&1 || need_apt+=(runsc) ;;  # FLEET_SANDBOX=gvisor
    *) need_apt+=("$pkg") ;;
  esac
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need_apt[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "installing uv" >&2
  python3 -m pip install --quiet uv
fi
UV="uv"; command -v uv >/dev/null 2>&1 || UV="python3 -m uv"
# Extras (daytona, mlflow, mcp) are for the features and tests that use them.
$UV sync --frozen --quiet ${FLEET_SYNC_ARGS:-}
