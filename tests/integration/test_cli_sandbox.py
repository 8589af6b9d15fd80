"""`fleet sandbox exec` and `fleet doctor` as a user runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLEET = Path(sys.executable).with_name("fleet")


def fleet(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    return subprocess.run([str(FLEET), *args], input=stdin, text=True, capture_output=True,
                          env={**clean, **env}, timeout=120)


def test_exec_from_stdin_prints_output_and_succeeds():
    done = fleet("sandbox", "exec", stdin="x = 6 * 7\nprint('answer', x)\nx\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answer 42\n42\n"


def test_exec_json_reports_the_error_with_its_line(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("a = 1\nb = [1, 2][5]\n")
    done = fleet("sandbox", "exec", str(script), "--json")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["error_type"] == "IndexError"
    assert result["error_line"] == 2
    assert 'File "<cell-1>", line 2' in result["traceback"]
    assert result["timed_out"] is False and result["duration_s"] >= 0


def test_exec_timeout_is_reported():
    done = fleet("sandbox", "exec", "--json", "--timeout", "1", stdin="while True: pass\n")
    assert done.returncode == 1
    result = json.loads(done.stdout)
    assert result["timed_out"] is True and result["error_type"] == "TimeoutError"


def test_exec_of_a_missing_file_is_a_clear_error(tmp_path):
    done = fleet("sandbox", "exec", str(tmp_path / "nope.py"))
    assert done.returncode == 1
    assert "cannot read" in done.stderr and "Traceback" not in done.stderr


def test_unsafe_local_runs_without_isolation_and_says_so():
    done = fleet("sandbox", "exec", stdin="import os\nprint(os.path.exists('/etc/passwd'))\n",
                 FLEET_SANDBOX="unsafe-local")
    assert done.returncode == 0
    assert done.stdout == "True\n"  # the host's files: no isolation
    assert "WITHOUT isolation" in done.stderr


@pytest.mark.parametrize("backend", ["local", pytest.param("gvisor", marks=pytest.mark.skipif(
    shutil.which("runsc") is None, reason="gVisor's runsc is not installed"))])
def test_doctor_reports_the_isolation_in_force(backend):
    done = fleet("doctor", FLEET_SANDBOX=backend, COLUMNS="300", FLEET_API_KEY="test")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    runtime = "gVisor (runsc " if backend == "gvisor" else "bubblewrap "
    assert f"✓ {runtime}" in out and "sandbox works (Python 3." in out
    assert re.search(r"✓ control groups v[12] \(memory, pids", out), out
    assert "1024 MiB of memory with /tmp and /dev/shm (FLEET_SANDBOX_MEMORY_MB)" in out
    assert "✓ disk quota: /work is an ext4 image of 1024 MiB" in out
    assert "65536 files" in out and "/tmp 256 MiB" in out
    assert "✓ user namespaces refused inside (seccomp filter" in out
    assert "✓ open files: 1024 per process" in out


def test_doctor_says_loudly_when_control_groups_cannot_be_used(monkeypatch):
    from typer.testing import CliRunner

    from fleet_rlm.cli import app
    from fleet_rlm.sandbox import cgroups

    def unusable() -> cgroups.Hierarchy:
        raise cgroups.CgroupsUnavailable("no writable memory control group (as on this host)")

    monkeypatch.setattr(cgroups, "hierarchy", unusable)
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setenv("FLEET_API_KEY", "test")
    done = CliRunner().invoke(app, ["doctor"])
    assert done.exit_code == 0, done.output
    assert ("! NO control groups: no writable memory control group (as on this host). Memory, "
            "processes and /tmp are capped per process and per mount, not per sandbox"
            in done.output)


def test_without_bubblewrap_the_sandbox_refuses_and_says_how_to_fix_it(tmp_path):
    done = fleet("sandbox", "exec", stdin="print(1)\n", PATH=str(tmp_path))
    assert done.returncode == 1
    assert "apt-get install -y bubblewrap" in done.stderr
    assert "FLEET_SANDBOX=unsafe-local" in done.stderr
    doctor = fleet("doctor", PATH=str(tmp_path))
    assert doctor.returncode == 1 and "bubblewrap" in doctor.stdout


def test_doctor_fails_when_no_model_is_configured_and_names_the_settings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = subprocess.run([str(FLEET), "doctor"], text=True, capture_output=True, timeout=120,
                          env={**{k: v for k, v in env.items() if not k.startswith("FLEET_")},
                               "COLUMNS": "400", "FLEET_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✗ no model is configured for openai/gpt-4o-mini: set FLEET_API_KEY (or " \
        "OPENAI_API_KEY)" in done.stdout
    assert "FLEET_API_BASE" in done.stdout and "FLEET_ROOT_MODEL" in done.stdout


def test_doctor_live_makes_one_tiny_call(tmp_path, scripted_lm):
    server = scripted_lm([{"match": "single word OK", "model": "root", "reply": "OK"}])
    base = {"COLUMNS": "400", "FLEET_DATA_DIR": str(tmp_path), "FLEET_ROOT_MODEL": "openai/root",
            "FLEET_API_BASE": server.api_base, "FLEET_ALLOW_UNPRICED_MODELS": "true"}
    done = fleet("doctor", "--live", **base)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"✓ model configured: openai/root (FLEET_API_BASE {server.api_base})" in done.stdout
    assert "✓ live call: openai/root answered: 'OK'" in done.stdout
    assert server.stats()["calls"] == 1
    dead = fleet("doctor", "--live", **{**base, "FLEET_API_BASE": "http://127.0.0.1:9/v1"})
    assert dead.returncode == 1
    assert "✗ live call: Could not reach http://127.0.0.1:9/v1" in dead.stdout
