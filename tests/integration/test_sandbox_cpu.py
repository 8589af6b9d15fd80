"""A request keeps the worker on the supervisor's CPU only while it is short (driver.PIN_S):
quick hand-offs stay on one CPU, and a longer cell, with every thread and process it started,
gets every CPU back."""

from __future__ import annotations

import os

import pytest

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
