"""`pip install` serves the app: a wheel built from a clean checkout of the committed tree carries
the built web app (the hatch build hook runs the npm build), and installed into an empty venv its
`fleet web` serves the Workbench, which Chromium draws. Nothing of the source tree is on the
installed server's path, and no Node runs there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from e2e_support import LOCAL_TOKEN

from conftest import ROOT, free_port, healthy
from uv_support import uv_command

pytestmark = pytest.mark.slow

STATIC = "fleet_rlm/server/static"


def _run(args: list[str], cwd: Path, **env: str) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **env})
    assert result.returncode == 0, (
        f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def _assets(index_html: str) -> list[str]:
    return re.findall(r'(?:src|href)="/(assets/[^"]+)"', index_html)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel and sdist `uv build` makes in a fresh clone (no node_modules, no build)."""
    if shutil.which("npm") is None:
        pytest.fail("building the package needs npm (Node.js 20.19+)")
    work = tmp_path_factory.mktemp("package")
    checkout = work / "checkout"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(checkout)], work)
    assert not (checkout / "src" / STATIC).exists()
    _run([*uv_command(), "build", "--out-dir", str(work / "dist")], checkout,
         npm_config_prefer_offline="true")
    (wheel,) = (work / "dist").glob("*.whl")
    (sdist,) = (work / "dist").glob("*.tar.gz")
    return wheel, sdist


def test_wheel_and_sdist_carry_the_built_web_app(built):
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        index = archive.read(f"{STATIC}/index.html").decode()
    assets = _assets(index)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    assert {f"{STATIC}/{a}" for a in assets} <= names
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        sdist_names = set(archive.getnames())
    assert {f"{root}/src/{STATIC}/{a}" for a in [*assets, "index.html"]} <= sdist_names
    assert f"{root}/hatch_build.py" in sdist_names


def test_a_wheel_builds_from_the_sdist_without_node(built, tmp_path):
    """The sdist carries the built app, newer than its sources: building a wheel from it (as
    `pip install fleet_rlm-*.tar.gz` does) needs no npm."""
    _, sdist = built
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    tools = tmp_path / "bin"  # what the build runs, and no node or npm
    tools.mkdir()
    for tool in ("bash", "find", "dirname", "git"):
        (tools / tool).symlink_to(shutil.which(tool))
    uv = uv_command()
    if uv[0] == "uv":
        uv = [shutil.which("uv")]
    _run([*uv, "build", "--wheel", "--python", sys.executable, "--out-dir",
          str(tmp_path / "dist"), str(unpacked)], tmp_path, PATH=str(tools))
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert f"{STATIC}/index.html" in archive.namelist()


def test_pip_installed_wheel_serves_the_workbench(built, browser, tmp_path):
    wheel, _ = built
    venv = tmp_path / "venv"
    _run([*uv_command(), "venv", "--quiet", "--python", sys.executable, str(venv)], tmp_path)
    _run([*uv_command(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
          str(wheel)], tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PATH": f"{venv / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "FLEET_DATA_DIR": str(tmp_path / "data"), "FLEET_TOKEN": LOCAL_TOKEN}
    log = (tmp_path / "fleet-web.log").open("w")
    # Run from an empty directory: the installed package, not this checkout, answers.
    proc = subprocess.Popen([str(venv / "bin" / "fleet"), "web", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(base, proc, tmp_path / "fleet-web.log")
        with urllib.request.urlopen(f"{base}/") as response:
            index = response.read().decode()
        assert "not built yet" not in index
        for asset in _assets(index):
            with urllib.request.urlopen(f"{base}/{asset}") as response:
                assert response.status == 200 and response.read()
        context = browser.new_context(base_url=base)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"/?token={LOCAL_TOKEN}")
        page.get_by_role("button", name="Start a new session").click()
        page.get_by_role("textbox", name="Message").wait_for()
        context.close()
        assert not errors, errors
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _wait_healthy(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if healthy(base):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the installed fleet web did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)

