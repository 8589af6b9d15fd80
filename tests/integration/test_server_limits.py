"""What anyone who can reach the port can make the server do before authentication: nothing
costly. A 300 MB body without a token is refused from its headers, unread (the client cannot push
more than the sockets' buffers, the server's memory and disk writes stay flat); without login the
same bodies meet the route's cap. A connection that stalls its headers or body is closed, and
connections past the cap get 503."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from test_server_support import (
    API,
    BEARER,
    TOKEN,
    free_port,
    settings_for,
    uvicorn_server,
    wait_for,
)
from uvicorn.server import ServerState
from websockets.sync.client import connect

pytestmark = pytest.mark.slow
MB = 1024 * 1024
BIG = 300 * MB
# What loopback sockets buffer (both ends) before a sender that nobody reads from stalls.
SOCKET_BUFFERS = 32 * MB


@contextmanager
def fleet_web(data_dir: Path, **env: str) -> Iterator[tuple[int, int]]:
    """`fleet web` in a process of its own: (its pid, its port)."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("FLEET_", "MLFLOW_", "DAYTONA_"))}
    environ.update(FLEET_DATA_DIR=str(data_dir), FLEET_ROOT_MODEL="openai/root", **env)
    port = free_port()
    log = (data_dir.parent / "server.log").open("ab")
    process = subprocess.Popen([sys.executable, "-m", "fleet_rlm.cli", "web", "--port",
                                str(port)], env=environ, stdout=log, stderr=log)

    def healthy() -> bool:
        assert process.poll() is None, (data_dir.parent / "server.log").read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}{API}/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 60, "fleet web to answer")
        yield process.pid, port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _written(pid: int) -> int:
    """Bytes the process has passed to write(2) so far (files and sockets)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("wchar")


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Samples the process's resident memory every 20 ms; yields [baseline, peak]."""
    seen = [_status(pid, "VmRSS")] * 2
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen[1] = max(seen[1], _status(pid, "VmRSS"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()


def push(port: int, head: str, body_head: str = "", total: int = BIG, chunked: bool = False
         ) -> tuple[str, int]:
    """Sends the request head, then `body_head` and up to `total` body bytes as fast as the
    server takes them.
    Returns the reply's status line and how many body bytes went out before the server closed
    the connection or stopped reading."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(3)
    reply = bytearray()

    def read() -> None:
        try:
            while data := sock.recv(65536):
                reply.extend(data)
        except OSError:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    def framed(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    piece, sent = b" " * MB, 0
    try:
        sock.sendall(head.replace("\n", "\r\n").encode())
        if body_head:
            sock.sendall(framed(body_head.replace("\n", "\r\n").encode()))
        while sent < total:
            sock.sendall(framed(piece))
            sent += len(piece)
    except OSError:
        pass
    reader.join(10)
    sock.close()
    return bytes(reply).split(b"\r\n", 1)[0].decode(), sent


def _head(method: str, path: str, content_type: str, length: int | None) -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"{method} {API}{path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: {content_type}\n"
            f"{framing}\n\n")


MULTIPART = "multipart/form-data; boundary=xyz"
UPLOAD_HEAD = ('--xyz\nContent-Disposition: form-data; name="file"; filename="big.txt"\n'
               'Content-Type: text/plain\n\n')


def test_unauthenticated_300_mb_bodies_are_refused_unread(tmp_path):
    with fleet_web(tmp_path / "data", FLEET_AUTH="token") as (pid, port):
        assert httpx.post(f"http://127.0.0.1:{port}{API}/sessions", json={}).status_code == 401
        written = _written(pid)
        with peak_rss(pid) as rss:
            for path, content_type, length, body_head in (
                    ("/sessions", "application/json", BIG, ""),
                    ("/sessions", "application/json", None, ""),
                    ("/sessions/any/documents", MULTIPART, BIG, UPLOAD_HEAD),
                    ("/sessions/any/documents", MULTIPART, None, UPLOAD_HEAD)):
                status, sent = push(port, _head("POST", path, content_type, length), body_head,
                                    chunked=length is None)
                assert status == "HTTP/1.1 401 Unauthorized", (path, length, status)
                assert sent < SOCKET_BUFFERS, (path, length, sent)
        assert rss[1] - rss[0] < 40 * MB, rss
        assert _written(pid) - written < MB  # nothing spooled to disk


def test_without_login_bodies_meet_the_routes_caps(tmp_path):
    with fleet_web(tmp_path / "data", FLEET_AUTH="none", FLEET_MAX_UPLOAD_MB="8") as (pid, port):
        base = f"http://127.0.0.1:{port}{API}"
        session_id = httpx.post(f"{base}/sessions", json={"title": "t"}).json()["id"]
        written = _written(pid)
        with peak_rss(pid) as rss:
            # Declared too large: refused from the headers, unread.
            status, sent = push(port, _head("POST", "/sessions", "application/json", BIG))
            assert status.startswith("HTTP/1.1 413 ") and sent < SOCKET_BUFFERS
            status, sent = push(port, _head("POST", f"/sessions/{session_id}/documents",
                                            MULTIPART, BIG), UPLOAD_HEAD)
            assert status.startswith("HTTP/1.1 413 ") and sent < SOCKET_BUFFERS
            # Streamed: refused when it crosses the cap (1 MB of JSON, 8 MB of upload).
            for path, content_type, body_head in (
                    ("/sessions", "application/json", ""),
                    (f"/sessions/{session_id}/documents", MULTIPART, UPLOAD_HEAD)):
                status, sent = push(port, _head("POST", path, content_type, None), body_head,
                                    chunked=True)
                assert status.startswith("HTTP/1.1 413 "), (path, status)
                assert sent < SOCKET_BUFFERS + 8 * MB, (path, sent)
        assert rss[1] - rss[0] < 60 * MB, rss
        assert _written(pid) - written < 8 * MB + MB  # at most the upload cap spooled
        refused = httpx.post(f"{base}/sessions", content=b" " * (MB + 1),
                             headers={"content-type": "application/json"})
        assert refused.json() == {"error": "too_large", "message": "the request body is larger "
                                  "than 1 MB (the API's limit for JSON bodies)"}


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes `sock` (reading and dropping what it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the connection is still open after {limit} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_stalled_headers_and_bodies_are_cut_off_and_connections_are_capped(tmp_path):
    settings = settings_for(None, tmp_path / "data", header_timeout_s=1, body_timeout_s=1,
                            max_connections=4)
    with uvicorn_server(settings) as base:
        port = int(base.rsplit(":", 1)[1])
        # Connected and silent; a header line now and then (slowloris).
        silent = socket.create_connection(("127.0.0.1", port))
        assert _closed_after(silent, 5) < 3
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        def drip() -> None:
            try:
                for n in range(50):
                    slow.sendall(b"X-Drip-%d: 1\r\n" % n)
                    time.sleep(0.3)
            except OSError:
                pass

        threading.Thread(target=drip, daemon=True).start()
        assert _closed_after(slow, 5) < 3

        # A body that stops arriving gets 408, and its connection is closed.
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        + f"Authorization: Bearer {TOKEN}\r\n".encode()
                        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"ti")
        stalled.settimeout(5)
        assert stalled.recv(65536).startswith(b"HTTP/1.1 408 ")
        assert _closed_after(stalled, 5) < 1

        # A WebSocket outlives the header deadline; a keep-alive client is served as before.
        with httpx.Client(base_url=base + API, headers=BEARER) as client:
            session_id = client.post("/sessions", json={"title": "t"}).json()["id"]
            with connect(f"ws://127.0.0.1:{port}{API}/sessions/{session_id}/ws",
                         additional_headers=BEARER) as ws:
                assert ws.recv(5)
                time.sleep(1.5)
                ws.send("not json")
                assert '"bad_json"' in ws.recv(5)
            time.sleep(0.5)
            assert client.get("/health").status_code == 200

            # Connections past the cap get 503 until the idle ones are closed.
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
            with httpx.Client(base_url=base + API) as fresh:
                assert fresh.get("/health").status_code == 503
            for sock in idle:
                _closed_after(sock, 5)
            with httpx.Client(base_url=base + API) as fresh:
                assert fresh.get("/health").status_code == 200


@pytest.mark.parametrize("protocol", ["h11", "httptools"])
async def test_uvicorn_still_has_what_the_header_deadline_uses(protocol):
    """serving.header_deadline subclasses uvicorn's HTTP protocols and reads their internals."""
    config = uvicorn.Config(app=None, http=protocol)
    config.load()
    instance = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    for name in ("cycle", "loop", "transport"):
        assert hasattr(instance, name), f"uvicorn's {protocol} protocol has no `{name}` any more"
    for name in ("connection_made", "connection_lost", "on_response_complete"):
        assert callable(getattr(instance, name, None)), f"uvicorn's {protocol} lost {name}()"
    cycle = sys.modules[config.http_protocol_class.__module__].RequestResponseCycle
    assert "self.response_complete =" in inspect.getsource(cycle.__init__), (
        f"uvicorn's {protocol} request cycle has no `response_complete` any more")


def test_bodies_past_the_json_cap_reach_the_routes_that_take_them(tmp_path):
    """The upload and workspace routes take bodies by their own caps, far above a JSON body's."""
    from test_server_support import app_client

    with app_client(settings_for(None, tmp_path / "data")) as client:
        session_id = client.post(f"{API}/sessions", json={"title": "big"}).json()["id"]
        text = ("0123456789abcdef" * 4096 + "\n") * 48  # about 3 MB
        upload = client.post(f"{API}/sessions/{session_id}/documents",
                             files={"file": ("big.txt", text.encode(), "text/plain")})
        assert upload.status_code == 201, upload.text
        put = client.put(f"{API}/sessions/{session_id}/workspace/file",
                         params={"path": "artifacts/big.bin"}, content=b"x" * (3 << 20))
        assert (put.status_code, put.json()["size"]) == (200, 3 << 20), put.text
        too_big = client.post(f"{API}/sessions", json={"title": "x" * (2 << 20)})
        assert too_big.status_code == 413 and "JSON" in too_big.json()["message"]
