"""Hatch build hook: the built web app goes into the wheel and the sdist.

Runs scripts/build-frontend.sh (npm ci and the Vite build, each only when needed) before the
package is built, so `pip install fleet-rlm-*.whl && fleet web` serves the Workbench with no Node
on the target. An sdist carries the build too: a wheel made from it needs Node only when the web
app's sources are newer than the build they came with. Editable installs (`uv sync`) build it
when npm is there and only warn when it is not, so a fresh clone's `uv run fleet web` serves the
app yet a machine without Node can still install the package for development.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

STATIC = "src/fleet_rlm/server/static"


class WebAppBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        result = subprocess.run(["bash", str(root / "scripts" / "build-frontend.sh")], cwd=root,
                                stdout=sys.stderr, stderr=sys.stderr, check=False)
        built = (root / STATIC / "index.html").is_file()
        if result.returncode == 0 and built:
            return
        message = (f"the web app could not be built (scripts/build-frontend.sh exited "
                   f"{result.returncode}); it needs Node.js 20.19+ with npm")
        if version == "editable":
            print(f"warning: {message}; `fleet web` shows how to build it later", file=sys.stderr)
            return
        raise RuntimeError(message)
