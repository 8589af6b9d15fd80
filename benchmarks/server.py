"""Server benchmark: concurrent sessions over real WebSockets against a real `fleet web`.

    uv run python benchmarks/server.py [--sessions 50] [--rounds 5] [--latency-ms 100] [--quick]
    uv run python benchmarks/server.py --replicas 2 [--admin-url postgresql://postgres@HOST/postgres]

`fleet web` runs as a subprocess on a loopback port with its data dir in a temporary directory;
the scripted LM server runs in a process of its own and answers every model call after
`--latency-ms`. Each round opens one WebSocket per session, then every session sends its message
at once; each turn is one agent step (finish) and the answer: two model calls, no sandbox work.
The client stamps every frame as it arrives; an event's `ts` is stamped when the engine emits it,
and client and server share this machine's clock, so receipt minus `ts` is the latency the server
adds (recording, fan-out, the socket) plus the client's own scheduling. Rows beside it: the time
from the client sending a message to its `turn_started` arriving (a message waiting before its
turn starts), the server's CPU time per turn (/proc/<pid>/stat), and a crowded turn's wall over a
lone session's, each with its goal.

`--replicas 2`: two `fleet web` replicas on one PostgreSQL database (made for the run with
`--admin-url`'s role and dropped after; migrated once by `fleet db upgrade`). Each session sends
its message through one replica and is watched through a socket on the other, so every event it
measures crossed processes: written to the store, announced by NOTIFY, read back. Beside it, the
same sessions against one `fleet web` on the same database, each socket on the process that runs
its turn.
"""

# ruff: noqa: E402 - litellm reads LITELLM_LOCAL_MODEL_COST_MAP when it is first imported
from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # fleet web inherits it

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import connect

from fleet_rlm.testing import dspy_reply

API = "/api/v1"
ANSWER = r"then `\[\[ ## answer ## \]\]`"  # only the final-answer (extract) prompt has this
GOAL_P99_MS = 20.0
GOAL_CROSS_P99_MS = 50.0  # across replicas: the store and NOTIFY lie between
GOAL_START_P99_MS = 50.0  # message sent -> its turn_started received, 50 sessions at once
GOAL_WALL_RATIO = 2.0  # a crowded turn's wall at most this many times a lone session's
GOAL_CPU_PER_TURN_MS = 25.0  # the server's CPU time per trivial turn
SERVER_PIDS: dict[str, int] = {}  # base URL -> pid of the fleet web serving it
SERVE = "from fleet_rlm.testing.scripted_lm import main; main()"
console = Console()


def script(latency_ms: int) -> list[dict]:
    """Any message: the agent finishes at once, then answers; each call after `latency_ms`."""
    return [
        {"model": "root", "match": ANSWER, "delay_ms": latency_ms,
         "reply": dspy_reply(reasoning="r", answer="done")},
        {"model": "root", "match": "next_thought", "delay_ms": latency_ms,
         "reply": dspy_reply(next_thought="done", next_tool_name="finish", next_tool_args="{}")},
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def lm_server(rules: list[dict], tmp: Path) -> Iterator[str]:
    """The scripted LM server in its own process, as a provider would be. Yields its api_base."""
    path = tmp / "script.json"
    path.write_text(json.dumps(rules))
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "--script", str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the scripted LM server did not start: {url!r}")
        yield f"{url}/v1"
        stats = httpx.get(f"{url}/_stats").json()
        if stats["unexpected"]:
            raise RuntimeError(f"unexpected model calls: {stats['unexpected_calls']}")
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def fleet_web(api_base: str, tmp: Path, name: str = "fleet-web", **extra: str) -> Iterator[str]:
    """`fleet web` on a free loopback port; yields its base URL once it is ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "MLFLOW_"))}
    env.update(FLEET_DATA_DIR=str(tmp / name), FLEET_API_BASE=api_base, FLEET_AUTH="none",
               FLEET_ROOT_MODEL="openai/root", FLEET_SUB_MODEL="openai/sub",
               FLEET_ALLOW_UNPRICED_MODELS="true", **extra)
    port = free_port()
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "fleet_rlm.cli", "web", "--port", str(port)],
                            env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    SERVER_PIDS[base] = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"fleet web exited: {(tmp / f'{name}.log').read_text()}")
            try:
                if httpx.get(f"{base}{API}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("fleet web did not answer within 60 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


@dataclass
class Round:
    sessions: int
    wall: float = 0.0  # from the first message sent to the last turn_finished received
    added: list[float] = field(default_factory=list)  # receipt - ts of every event, seconds
    by_type: dict[str, list[float]] = field(default_factory=dict)  # the same, per event type
    turn_walls: list[float] = field(default_factory=list)  # message sent -> turn_finished
    started: list[float] = field(default_factory=list)  # message sent -> turn_started received
    cpu: float = 0.0  # server CPU seconds from the first message to the last turn_finished
    cpu_round: float = 0.0  # the same over the whole round: sessions made, sockets opened

    @property
    def events(self) -> int:
        return len(self.added)

    def pct(self, q: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.added if values is None else values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def server_cpu(bases: list[str]) -> float:
    """CPU seconds (user and system) the fleet web processes behind `bases` have used so far,
    from /proc/<pid>/stat."""
    total = 0
    for base in bases:
        stat = Path(f"/proc/{SERVER_PIDS[base]}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after the command name, from field 3
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total / os.sysconf("SC_CLK_TCK")


SETTLE_S = 0.2  # after the last turn_finished: what the turns still write counts as theirs


async def one_round(bases: list[str], sessions: int) -> Round:
    """Every session sends at once; with two bases, session i sends through bases[i % 2] and is
    measured on a socket of the other."""
    result = Round(sessions)
    round_cpu = server_cpu(bases)
    async with httpx.AsyncClient(base_url=bases[0]) as http:
        ids = [(await http.post(f"{API}/sessions", json={"title": f"bench {i}"})).json()["id"]
               for i in range(sessions)]

    def socket_on(base: str, sid: str):
        return connect(f"{base.replace('http', 'ws')}{API}/sessions/{sid}/ws", max_size=None)

    senders = [await socket_on(bases[i % len(bases)], sid) for i, sid in enumerate(ids)]
    watchers = senders if len(bases) == 1 else [
        await socket_on(bases[(i + 1) % len(bases)], sid) for i, sid in enumerate(ids)]
    sockets = senders + (watchers if watchers is not senders else [])
    drains: list[asyncio.Task] = []
    try:
        for ws in sockets:
            assert json.loads(await ws.recv())["type"] == "session"
        go = asyncio.Event()

        async def drain(ws) -> None:  # the sender's own copy of the events, unmeasured
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass

        if watchers is not senders:
            drains = [asyncio.create_task(drain(ws)) for ws in senders]

        async def turn(i: int, ws) -> None:
            await go.wait()
            sent = time.time()
            await senders[i].send(json.dumps({"type": "message", "text": f"question {i}"}))
            while True:
                text = await ws.recv()
                received = time.time()
                frame = json.loads(text)
                if "seq" not in frame:
                    raise RuntimeError(f"unexpected frame: {frame}")
                result.added.append(received - frame["ts"])
                result.by_type.setdefault(frame["type"], []).append(received - frame["ts"])
                if frame["type"] == "turn_started":
                    result.started.append(received - sent)
                if frame["type"] == "turn_finished":
                    if frame["status"] != "ok":
                        raise RuntimeError(f"turn ended {frame['status']}: {frame}")
                    result.turn_walls.append(received - sent)
                    return

        tasks = [asyncio.create_task(turn(i, ws)) for i, ws in enumerate(watchers)]
        cpu = server_cpu(bases)
        started = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
        result.wall = time.perf_counter() - started
        await asyncio.sleep(SETTLE_S)
        result.cpu = server_cpu(bases) - cpu
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
        for task in drains:
            task.cancel()
    result.cpu_round = server_cpu(bases) - round_cpu
    return result


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50, help="concurrent sessions per round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up)")
    parser.add_argument("--latency-ms", type=int, default=100, help="each model call's latency")
    parser.add_argument("--quick", action="store_true", help="10 sessions, 2 rounds")
    parser.add_argument("--replicas", type=int, choices=(1, 2), default=1,
                        help="2: two fleet web replicas on one PostgreSQL, each session "
                        "measured on the replica that does not run its turn")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="with --replicas 2: a PostgreSQL role that may create databases")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.rounds = 10, 2
    if args.replicas == 2:
        return replicas_main(args)

    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with lm_server(script(args.latency_ms), tmp) as api_base, fleet_web(api_base, tmp) as base:
            asyncio.run(one_round([base], 1))  # warm-up, untimed: imports, first connections
            alone = [asyncio.run(one_round([base], 1)) for _ in range(args.rounds)]
            crowd = [asyncio.run(one_round([base], args.sessions)) for _ in range(args.rounds)]

    def median(runs: list[Round], pick) -> float:
        return statistics.median(pick(r) for r in runs)

    table = Table(title=f"Server: {args.sessions} concurrent sessions over WebSockets against "
                        f"fleet web, model latency {args.latency_ms} ms — medians of rounds")
    for column in ("measure", f"{args.sessions} sessions", "1 session", "ratio", "goal",
                   "result"):
        table.add_column(column, justify="left" if column in ("measure", "goal") else "right")

    def row(label: str, pick, fmt=ms, goal: str = "-", met=None) -> None:
        a, b = median(crowd, pick), median(alone, pick)
        verdict = "" if met is None else ("met" if met(a) else "[bold red]MISSED[/bold red]")
        table.add_row(label, fmt(a), fmt(b), f"{a / b:.3g}x" if b else "-", goal, verdict)

    def rate(unit: str):
        return lambda value: f"{value:.3g} {unit}"

    row("added latency, event p50", lambda r: r.pct(0.50))
    row("added latency, event p99", lambda r: r.pct(0.99), goal=f"<= {GOAL_P99_MS:g} ms",
        met=lambda a: a * 1e3 <= GOAL_P99_MS)
    row("added latency, event max", lambda r: max(r.added))
    row("throughput, events/s", lambda r: r.events / r.wall, rate("/s"))
    row("throughput, turns/s", lambda r: r.sessions / r.wall, rate("/s"))
    row("turn wall p50 (2 model calls)", lambda r: statistics.median(r.turn_walls))
    row("events per turn", lambda r: r.events / r.sessions, rate(""))
    turn_start_rows(row, median(alone, lambda r: statistics.median(r.turn_walls)))
    console.print(table)
    kinds = Table(title=f"Added latency by event type, {args.sessions} sessions — medians of "
                        "rounds")
    for column in ("event", "p50", "p99", "per turn"):
        kinds.add_column(column, justify="left" if column == "event" else "right")
    for kind in crowd[0].by_type:
        kinds.add_row(kind, ms(median(crowd, lambda r: r.pct(0.50, r.by_type[kind]))),  # noqa: B023
                      ms(median(crowd, lambda r: r.pct(0.99, r.by_type[kind]))),  # noqa: B023
                      f"{len(crowd[0].by_type[kind]) / args.sessions:.3g}")
    console.print(kinds)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}; "
        f"{args.rounds} timed rounds per column after one untimed warm-up, each with fresh "
        "sessions. Added latency = client receipt time minus the event's ts (same clock), so it "
        "includes the client's own scheduling of its sockets. Throughput spans the first message sent to the last "
        "turn_finished received.")
    return 0


def turn_start_rows(row, lone_wall: float) -> None:
    """How soon a message's turn starts, what a turn costs the server, and a turn's wall
    against `lone_wall`, a lone session's median."""
    row("message -> turn_started p50", lambda r: r.pct(0.50, r.started))
    row("message -> turn_started p99", lambda r: r.pct(0.99, r.started),
        goal=f"<= {GOAL_START_P99_MS:g} ms", met=lambda a: a * 1e3 <= GOAL_START_P99_MS)
    row("server CPU per turn", lambda r: r.cpu / r.sessions,
        goal=f"<= {GOAL_CPU_PER_TURN_MS:g} ms", met=lambda a: a * 1e3 <= GOAL_CPU_PER_TURN_MS)
    row("server CPU per turn, whole round", lambda r: r.cpu_round / r.sessions)
    row("turn wall p50 / lone session's", lambda r: statistics.median(r.turn_walls) / lone_wall,
        lambda value: f"{value:.3g}x", goal=f"<= {GOAL_WALL_RATIO:g}x",
        met=lambda a: a <= GOAL_WALL_RATIO)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A database of its own for the run, dropped after; yields its URL (as the admin role)."""
    import asyncpg
    import sqlalchemy as sa

    admin = sa.make_url(admin_url)
    name = f"fleet_bench_{uuid.uuid4().hex[:8]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin.set(drivername="postgresql")
                                     .render_as_string(hide_password=False))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def replicas_main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp_name, \
            postgres_database(args.admin_url) as url:
        tmp = Path(tmp_name)
        subprocess.run([sys.executable, "-m", "fleet_rlm.cli", "db", "upgrade", "--url", url],
                       check=True, capture_output=True)  # once, never by the replicas
        with lm_server(script(args.latency_ms), tmp) as api_base:
            with fleet_web(api_base, tmp, "one", FLEET_DATABASE_URL=url) as one:
                asyncio.run(one_round([one], 2))  # warm-up, untimed
                alone = [asyncio.run(one_round([one], args.sessions))
                         for _ in range(args.rounds)]
            with fleet_web(api_base, tmp, "a", FLEET_DATABASE_URL=url) as a, \
                    fleet_web(api_base, tmp, "b", FLEET_DATABASE_URL=url) as b:
                asyncio.run(one_round([a, b], 2))  # warm-up, untimed
                cross = [asyncio.run(one_round([a, b], args.sessions))
                         for _ in range(args.rounds)]

    def median(runs: list[Round], pick) -> float:
        return statistics.median(pick(r) for r in runs)

    table = Table(title=f"Server on PostgreSQL: {args.sessions} concurrent sessions, one fleet "
                        "web vs two replicas (each session watched on the replica that does not "
                        f"run its turn), model latency {args.latency_ms} ms — medians of rounds")
    for column in ("measure", "one process", "two replicas", "ratio", "goal", "result"):
        table.add_column(column, justify="left" if column in ("measure", "goal") else "right")

    def row(label: str, pick, fmt=ms, goal: str = "-", met=None) -> None:
        a, b = median(alone, pick), median(cross, pick)
        verdict = "" if met is None else ("met" if met(b) else "[bold red]MISSED[/bold red]")
        table.add_row(label, fmt(a), fmt(b), f"{b / a:.3g}x" if a else "-", goal, verdict)

    def rate(unit: str):
        return lambda value: f"{value:.3g} {unit}"

    row("added latency, event p50", lambda r: r.pct(0.50))
    row("added latency, event p99", lambda r: r.pct(0.99),
        goal=f"two replicas <= {GOAL_CROSS_P99_MS:g} ms",
        met=lambda b: b * 1e3 <= GOAL_CROSS_P99_MS)
    row("added latency, event max", lambda r: max(r.added))
    row("throughput, events/s", lambda r: r.events / r.wall, rate("/s"))
    row("throughput, turns/s", lambda r: r.sessions / r.wall, rate("/s"))
    row("turn wall p50 (2 model calls)", lambda r: statistics.median(r.turn_walls))
    console.print(table)
    kinds = Table(title="Added latency by event type — medians of rounds")
    for column in ("event", "one process p50", "p99", "two replicas p50", "p99"):
        kinds.add_column(column, justify="left" if column == "event" else "right")
    for kind in cross[0].by_type:
        kinds.add_row(kind, *(ms(median(runs, lambda r: r.pct(q, r.by_type[kind])))  # noqa: B023
                              for runs in (alone, cross) for q in (0.50, 0.99)))
    console.print(kinds)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load}; "
        f"{args.rounds} timed rounds per column after an untimed warm-up, each with fresh "
        "sessions; both columns on the same PostgreSQL database. Added latency = client "
        "receipt time minus the event's ts (one machine, one clock).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
