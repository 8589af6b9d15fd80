"""`fleet doctor` and the server's sandbox check (POST /settings/test-sandbox) report the same
health checks of the configured backend: the same facts, the same verdicts."""

from __future__ import annotations

import os
import shutil

import pytest
from test_server_support import API, app_client, settings_for
from typer.testing import CliRunner

from fleet_rlm.cli import app

STATUS = {"✓": "ok", "!": "warn", "✗": "fail"}
HEADER_LINES = 3  # root model, api base, sandbox


def _doctor(monkeypatch: pytest.MonkeyPatch, tmp_path, sandbox: str) -> tuple[int, set]:
    """`fleet doctor`'s exit code and its checks as {(status, detail)}."""
    for name in [n for n in os.environ if n.startswith("FLEET_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FLEET_DATA_DIR", str(tmp_path / "doctor"))
    monkeypatch.setenv("FLEET_SANDBOX", sandbox)
    monkeypatch.setenv("FLEET_API_KEY", "test")  # a model is configured: its line comes first
    monkeypatch.setenv("COLUMNS", "2000")  # one line per check
    result = CliRunner().invoke(app, ["doctor"])
    lines = result.output.splitlines()
    assert lines[2] == f"sandbox:    {sandbox}", result.output
    assert lines[HEADER_LINES].startswith("✓ model configured:"), result.output
    return result.exit_code, {(STATUS[line[0]], line[2:]) for line in lines[HEADER_LINES + 1:]}


def _server(tmp_path, sandbox: str) -> dict:
    with app_client(settings_for(None, tmp_path / "server", sandbox=sandbox)) as client:
        return client.post(f"{API}/settings/test-sandbox").json()


def _facts(result: dict) -> set:
    return {(check["status"], check["detail"]) for check in result["checks"]}


@pytest.mark.parametrize("sandbox", ["local", pytest.param("gvisor", marks=pytest.mark.skipif(
    shutil.which("runsc") is None, reason="gVisor's runsc is not installed"))])
def test_an_isolated_local_backend_reports_the_same_facts_both_ways(monkeypatch, tmp_path,
                                                                    sandbox):
    code, doctor = _doctor(monkeypatch, tmp_path, sandbox)
    server = _server(tmp_path, sandbox)
    assert code == 0 and server["ok"] is True, server
    assert _facts(server) == doctor
    names = [check["name"] for check in server["checks"]]
    assert names == ["runtime", "cgroups", "disk_quota", "seccomp", "open_files"]


def test_unsafe_local_says_isolation_is_off_both_ways(monkeypatch, tmp_path):
    code, doctor = _doctor(monkeypatch, tmp_path, "unsafe-local")
    server = _server(tmp_path, "unsafe-local")
    assert code == 0 and server["ok"] is True, server
    assert "(isolation is OFF)" in server["message"]
    assert _facts(server) == doctor == {
        ("warn", "sandbox isolation is OFF (FLEET_SANDBOX=unsafe-local)")}


def test_a_missing_runtime_fails_both_ways_with_the_same_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap
    code, doctor = _doctor(monkeypatch, tmp_path, "local")
    server = _server(tmp_path, "local")
    assert code == 1 and server["ok"] is False and server["problem"] == "sandbox"
    assert _facts(server) == doctor
    [(status, detail)] = doctor
    assert status == "fail" and "apt-get install -y bubblewrap" in detail
    assert server["message"] == detail  # the failed check is the answer; no second try
