"""The sandbox backends are records looked up by name: each FLEET_SANDBOX value has one, its
factories make that backend's sandbox and workspace, and an unknown name is refused naming the
valid ones."""

from __future__ import annotations

from typing import get_args

import pytest

from fleet_rlm.config import SandboxBackend, Settings
from fleet_rlm.sandbox import SandboxError, backend, create_sandbox
from fleet_rlm.sandbox.backends import BACKENDS
from fleet_rlm.sandbox.daytona import DaytonaSandbox
from fleet_rlm.sandbox.daytona_workspace import DaytonaWorkspace
from fleet_rlm.sandbox.gvisor import GVisorSandbox
from fleet_rlm.sandbox.health import Check, iter_checks, sandbox_checks
from fleet_rlm.sandbox.local import LocalSandbox
from fleet_rlm.workspace import LocalWorkspace

NAMES = get_args(SandboxBackend)
# name: (its sandbox's class, isolated, runtime, local files, disk quota, settable by the API)
EXPECTED = {
    "local": (LocalSandbox, True, "bwrap", True, True, True),
    "gvisor": (GVisorSandbox, True, "runsc", True, True, True),
    "unsafe-local": (LocalSandbox, False, None, True, False, False),
    "daytona": (DaytonaSandbox, True, None, False, False, True),
}


def test_every_fleet_sandbox_value_has_one_record():
    assert sorted(BACKENDS) == sorted(NAMES) == sorted(EXPECTED)


@pytest.mark.parametrize("name", NAMES)
def test_a_backend_is_looked_up_by_its_name_and_makes_its_own_sandbox(name, tmp_path):
    record = backend(name)
    kind, isolated, runtime, local_files, disk_quota, api_settable = EXPECTED[name]
    assert record.name == name and record.summary
    assert (record.isolated, record.runtime, record.local_files, record.disk_quota,
            record.api_settable) == (isolated, runtime, local_files, disk_quota, api_settable)
    settings = Settings(sandbox=name, data_dir=tmp_path)
    sandbox = create_sandbox(settings, work_dir=tmp_path / "work")
    assert type(sandbox) is kind  # made, not started: nothing runs
    if isinstance(sandbox, LocalSandbox):
        assert sandbox.isolated is isolated


@pytest.mark.parametrize("name", NAMES)
def test_a_backend_gives_a_session_its_workspace(name, tmp_path):
    settings = Settings(sandbox=name, data_dir=tmp_path, max_workspace_file_mb=3)
    asked = []

    def directory():
        asked.append("directory")
        (tmp_path / "ws").mkdir(exist_ok=True)
        return tmp_path / "ws"

    def sandbox():
        asked.append("sandbox")
        raise AssertionError("a workspace asks for its sandbox only when it is used")

    workspace = backend(name).workspace(settings, directory, sandbox)
    if backend(name).local_files:
        assert isinstance(workspace, LocalWorkspace)
        assert workspace.root == (tmp_path / "ws").resolve()
        assert workspace.max_file_bytes == 3 << 20
        assert asked == ["directory"]
    else:
        assert isinstance(workspace, DaytonaWorkspace) and asked == []


def test_an_unknown_backend_is_refused_naming_the_valid_ones(tmp_path):
    with pytest.raises(SandboxError) as refused:
        backend("docker")
    message = str(refused.value)
    assert "'docker'" in message
    assert all(name in message for name in NAMES), message
    # Settings that skipped validation reach the same refusal, in every caller.
    settings = Settings.model_construct(sandbox="docker", data_dir=tmp_path)
    with pytest.raises(SandboxError, match="unknown sandbox backend 'docker'"):
        create_sandbox(settings)
    assert [(c.name, c.status) for c in sandbox_checks(settings)] == [("backend", "fail")]


def test_the_local_backends_say_nothing_is_left_remotely_of_a_deleted_session(tmp_path):
    settings = Settings(data_dir=tmp_path)
    for name in ("local", "gvisor", "unsafe-local"):
        assert backend(name).delete_session(settings, "s1") is None


def test_a_check_has_one_of_three_statuses():
    assert Check("x", "warn", "a fallback").failed is False
    assert Check("x", "fail", "broken").failed is True
    with pytest.raises(ValueError, match="ok, warn, fail"):
        Check("x", "bad", "?")  # type: ignore[arg-type]


def test_unsafe_local_warns_that_isolation_is_off(tmp_path):
    checks = sandbox_checks(Settings(sandbox="unsafe-local", data_dir=tmp_path))
    assert checks == [Check("isolation", "warn",
                            "sandbox isolation is OFF (FLEET_SANDBOX=unsafe-local)")]


def test_checks_that_cannot_run_end_in_a_failed_check(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "daytona", None)  # the SDK missing
    checks = list(iter_checks(Settings(sandbox="daytona", data_dir=tmp_path)))
    assert [(c.name, c.status) for c in checks] == [("daytona_sdk", "fail")]
    assert "pip install 'fleet-rlm[daytona]'" in checks[0].detail
