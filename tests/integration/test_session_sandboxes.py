"""A session's sandbox keeps its variables through a death of its process and through being
closed for idleness, and a sandbox that lost them never overwrites the good save."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from test_containment import sandbox_processes, wait_until_gone

from fleet_rlm.config import Settings
from fleet_rlm.sandbox.local import LocalSandbox
from fleet_rlm.sessions import SAVE_STATE, SessionService


@pytest.fixture
async def service(tmp_path: Path):
    made: list[SessionService] = []

    async def start(**overrides: object) -> tuple[SessionService, str]:
        svc = SessionService(Settings(data_dir=tmp_path / "data", exec_kill_grace_s=1.0,
                                      **overrides))
        await svc.open()
        made.append(svc)
        return svc, (await svc.create_session()).id

    yield start
    for svc in made:
        await svc.close()


def kill_from_outside(sandbox: LocalSandbox) -> None:
    """SIGKILL every process of the sandbox, as the kernel's OOM killer would."""
    assert sandbox.uid is not None
    for pid, _ in sandbox_processes(sandbox.uid):
        with contextlib.suppress(ProcessLookupError):  # gone with the one killed before
            os.kill(pid, signal.SIGKILL)
    assert wait_until_gone(sandbox.uid) == []


async def test_state_is_kept_across_a_sandbox_death(service) -> None:
    svc, session_id = await service()

    def scenario() -> None:
        box = svc.session_sandbox(session_id)
        assert isinstance(box, LocalSandbox)
        assert box.execute("kept = {'n': 41}").ok
        svc._save_state(session_id)  # as the end of a turn does
        assert box.execute("unsaved = 1").ok
        kill_from_outside(box)
        died = box.execute("kept")
        assert (died.error_type, died.state_lost) == ("SandboxDied", True)
        # The new driver is restored before any other code runs.
        back = box.execute("kept['n'] += 1\nkept, 'unsaved' in globals()")
        assert back.stdout == "({'n': 42}, False)\n", back
        svc._save_state(session_id)
        # Another death; the save made after the first restart holds.
        kill_from_outside(box)
        box.execute("1")
        assert box.execute("kept").stdout == "{'n': 42}\n"

    await asyncio.to_thread(scenario)


async def test_a_sandbox_without_the_saved_state_does_not_overwrite_it(service) -> None:
    svc, session_id = await service()
    work = svc.workspace(session_id)

    def scenario() -> None:
        box = svc.session_sandbox(session_id)
        assert box.execute("kept = 'good'").ok
        svc._save_state(session_id)
        saved = (work / "meta" / "namespace.pkl").read_bytes()
        # A sandbox on the same workspace that never restored (a restart whose restore failed).
        with LocalSandbox(svc.settings, work_dir=work) as fresh:
            refused = fresh.execute(SAVE_STATE)
        assert refused.error_type == "RuntimeError"
        assert "did not restore the saved state" in refused.error_message
        assert (work / "meta" / "namespace.pkl").read_bytes() == saved
        assert sorted(p.name for p in (work / "meta").iterdir()) == ["lost.json",
                                                                      "namespace.pkl"]

    await asyncio.to_thread(scenario)


async def test_an_idle_session_sandbox_is_saved_closed_and_restored(service) -> None:
    svc, session_id = await service(sandbox_idle_s=1.0)
    box = await asyncio.to_thread(svc.session_sandbox, session_id)
    assert isinstance(box, LocalSandbox)
    uid = box.uid
    assert uid is not None
    assert (await asyncio.to_thread(box.execute, "kept = [1, 2]")).ok  # never saved by a turn
    deadline = time.monotonic() + 10
    while box.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not box.alive
    assert await asyncio.to_thread(wait_until_gone, uid) == []
    again = await asyncio.to_thread(svc.session_sandbox, session_id)
    assert again is not box
    assert (await asyncio.to_thread(again.execute, "kept")).stdout == "[1, 2]\n"
