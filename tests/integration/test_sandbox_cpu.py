"""A request keeps the requesting thread, the supervisor and the worker on one CPU only while it
is short (driver.PIN_S): quick hand-offs stay on one CPU, and a longer cell, with every thread
and process it started, gets every CPU back, as do the host's thread and the supervisor."""

from __future__ import annotations

import os
import threading

import pytest

from fleet_rlm.sandbox import base
from fleet_rlm.sandbox.driver import PIN_S

CPUS = len(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(CPUS < 2, reason="pinning is only visible with two CPUs")


def test_a_quick_request_runs_the_worker_on_one_cpu(make) -> None:
    box = make()
    result = box.execute("import os\nprint(len(os.sched_getaffinity(0)))")
    assert result.ok, result.error_message
    assert result.stdout.strip() == "1"


def test_a_longer_cell_and_what_it_started_get_every_cpu_back(make) -> None:
    box = make()
    wait = PIN_S * 20
    code = f"""
import os, threading, time
read, write = os.pipe()
child = os.fork()  # started while the worker is held to one CPU
if child == 0:
    time.sleep({wait})
    os.write(write, str(len(os.sched_getaffinity(0))).encode())
    os._exit(0)
seen = {{}}
thread = threading.Thread(target=lambda: (time.sleep({wait}),
                                          seen.update(n=len(os.sched_getaffinity(0)))))
thread.start()
time.sleep({wait})
thread.join()
os.waitpid(child, 0)
print(len(os.sched_getaffinity(0)), seen["n"], os.read(read, 16).decode())
"""
    result = box.execute(code)
    assert result.ok, result.error_message
    assert result.stdout.split() == [str(CPUS)] * 3


def _probe(box) -> tuple[dict, list]:
    """A host function reporting the CPUs the requesting thread and the supervisor may use
    while the cell that calls it runs."""
    seen: dict = {}
    requester = threading.get_native_id()
    supervisor = box._session._partner  # noqa: SLF001 - the pid the host holds
    assert supervisor is not None, "the local backend holds its supervisor with the request"

    def probe() -> None:
        seen["thread"] = os.sched_getaffinity(requester)
        seen["supervisor"] = os.sched_getaffinity(supervisor)

    return seen, [probe]


def test_a_quick_request_holds_the_thread_and_the_supervisor_on_one_cpu(make, monkeypatch
                                                                        ) -> None:
    monkeypatch.setattr(base, "PIN_S", 30.0)  # a callback on a loaded machine may take a while
    box = make()
    everything = os.sched_getaffinity(0)
    seen, (probe,) = _probe(box)
    result = box.execute("probe()", callbacks={"probe": probe})
    assert result.ok, result.error_message
    assert len(seen["thread"]) == 1
    assert seen["supervisor"] == seen["thread"]
    assert os.sched_getaffinity(0) == everything  # the thread has its CPUs back


def test_a_longer_request_gives_the_thread_and_the_supervisor_every_cpu(make) -> None:
    box = make()
    everything = os.sched_getaffinity(0)
    seen, (probe,) = _probe(box)
    result = box.execute(f"import time\ntime.sleep({PIN_S * 20})\nprobe()",
                         callbacks={"probe": probe})
    assert result.ok, result.error_message
    assert seen == {"thread": everything, "supervisor": everything}
