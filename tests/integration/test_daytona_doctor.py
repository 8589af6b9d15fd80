"""`fleet doctor` with FLEET_SANDBOX=daytona: the SDK, the key, the target and the snapshot,
checked through the real SDK against the stand-in, each failure with what to do."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import daytona_standin
from daytona_standin import DaytonaStandIn, cli_env
from fleet_rlm.cli import app
from fleet_rlm.config import Settings
from fleet_rlm.sandbox.daytona import DaytonaSandbox
from fleet_rlm.sandbox.daytona_admin import create_snapshot

standin = daytona_standin.standin
settings = daytona_standin.settings
quick_polls = daytona_standin.quick_polls


@pytest.fixture
def doctor(monkeypatch: pytest.MonkeyPatch, standin: DaytonaStandIn, tmp_path: Path):
    """`doctor(**env)`: (exit code, output with its lines unwrapped) of `fleet doctor`."""
    cli_env(monkeypatch, standin, tmp_path)

    def run(**env: str) -> tuple[int, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(app, ["doctor"])
        return result.exit_code, " ".join(result.output.split())

    return run


def test_a_working_setup(doctor, settings: Settings, standin: DaytonaStandIn) -> None:
    DaytonaSandbox(settings).start()  # one fleet-rlm sandbox in the organisation
    code, out = doctor()
    assert code == 0, out
    assert "sandbox: daytona" in out
    assert "✓ Daytona SDK 0." in out
    assert (f"✓ the API key works at {standin.api_url}: 1 fleet-rlm sandbox(es), "
            "0 session volume(s)") in out
    assert "✓ target: the organisation's default (available: eu, us)" in out
    assert "! no snapshot: the driver is uploaded at each start" in out


def test_the_server_s_sandbox_check_reports_the_same_facts(doctor, settings: Settings) -> None:
    from fleet_rlm.server.checks import check_sandbox

    code, out = doctor()
    result = check_sandbox(settings)
    assert code == 0 and result.ok, result
    assert [c.name for c in result.checks] == ["daytona_sdk", "daytona_api", "daytona_target",
                                               "daytona_snapshot"]
    marks = {"ok": "✓", "warn": "!", "fail": "✗"}
    for check in result.checks:
        assert f"{marks[check.status]} {' '.join(check.detail.split())}" in out
    # Every mark in the report is one of these checks, or the model's configuration.
    assert "✓ model configured: " in out
    assert sum(out.count(f"{mark} ") for mark in marks.values()) == len(result.checks) + 1


def test_a_failed_check_is_the_server_s_answer_without_starting_a_sandbox(
        doctor, settings: Settings, standin: DaytonaStandIn) -> None:
    from fleet_rlm.server.checks import check_sandbox

    code, out = doctor(DAYTONA_API_KEY="wrong")
    result = check_sandbox(settings.model_copy(update={"daytona_api_key": "wrong"}))
    assert code == 1 and not result.ok and result.problem == "sandbox"
    assert [(c.name, c.status) for c in result.checks] == [("daytona_sdk", "ok"),
                                                           ("daytona_api", "fail")]
    assert "Daytona rejected the API key" in result.message
    assert " ".join(result.message.split()) in out
    assert standin.create_requests == []


def test_a_target_and_a_snapshot(doctor, settings: Settings) -> None:
    name, _ = create_snapshot(settings)
    code, out = doctor(DAYTONA_TARGET="eu", FLEET_DAYTONA_SNAPSHOT=name)
    assert code == 0, out
    assert "✓ target eu" in out and f"✓ snapshot {name} carries this driver" in out
    code, out = doctor(FLEET_DAYTONA_SNAPSHOT="fleet-rlm-driver-000000000000")
    assert code == 1
    assert "✗ Daytona could not find snapshot fleet-rlm-driver-000000000000" in out
    assert "run `fleet daytona snapshot`" in out


def test_an_unknown_target(doctor) -> None:
    code, out = doctor(DAYTONA_TARGET="mars")
    assert code == 1
    assert "✗ Daytona does not know the target 'mars': set DAYTONA_TARGET to one of eu, us" in out


def test_a_key_that_cannot_list_regions_leaves_the_target_unchecked(
        doctor, standin: DaytonaStandIn) -> None:
    standin.fail("GET", r"/api/regions$", 403, "Forbidden resource")
    code, out = doctor(DAYTONA_TARGET="eu")
    assert code == 0, out
    assert "! target eu: not checked, the key cannot list regions (403)" in out


def test_a_bad_key(doctor) -> None:
    code, out = doctor(DAYTONA_API_KEY="wrong")
    assert code == 1
    assert "✓ Daytona SDK" in out
    assert "✗ Daytona could not list sandboxes and volumes" in out
    assert "Daytona rejected the API key: check DAYTONA_API_KEY" in out
    assert "target" not in out, "nothing is checked after a failure"


def test_an_unreachable_api(doctor) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/api"
    code, out = doctor(DAYTONA_API_URL=url)
    assert code == 1
    assert f"cannot reach the Daytona API at {url}: check DAYTONA_API_URL" in out


def test_no_sdk(doctor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "daytona", None)
    code, out = doctor()
    assert code == 1
    assert "✗ the Daytona backend needs the Daytona SDK: pip install 'fleet-rlm[daytona]'" in out
