"""Reading a workspace over REST is safe whatever the sandbox left in it: FIFOs, sockets and huge
files are refused without blocking, and workspace I/O never starves the server's other work."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from test_server_support import API, app_client, quick, settings_for, until_finished, ws_url

READERS = 12  # more than the server's shared thread pool holds on a small machine


def _session(client, title: str) -> str:
    response = client.post(f"{API}/sessions", json={"title": title})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _release(fifo: Path) -> None:
    """Wake any reader stuck opening the FIFO (only a server without the defence has them)."""
    for _ in range(100):
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader left
                return
        time.sleep(0.02)


def test_a_fifo_read_over_rest_while_another_session_works(scripted_lm, tmp_path: Path) -> None:
    server = scripted_lm(quick("What is up?", "All good."))
    with app_client(settings_for(server, tmp_path / "data", max_workspace_file_mb=1)) as client:
        stuck, busy = _session(client, "stuck"), _session(client, "busy")
        root = client.app.state.svc.workspace(stuck)
        fifo = root / "artifacts" / "pipe"
        os.mkfifo(fifo)
        files = f"{API}/sessions/{stuck}/workspace/file"

        def other_session_works() -> tuple[str, int]:
            with client.websocket_connect(ws_url(busy)) as ws:
                assert ws.receive_json()["type"] == "session"
                ws.send_json({"type": "message", "text": "What is up?"})
                status = until_finished(ws.receive_json)[-1]["status"]
            upload = client.put(f"{API}/sessions/{busy}/workspace/file",
                                params={"path": "artifacts/note.txt"}, content=b"hello")
            return status, upload.status_code

        readers, worker = ThreadPoolExecutor(READERS), ThreadPoolExecutor(1)
        try:
            reads = [readers.submit(client.get, files, params={"path": "artifacts/pipe"})
                     for _ in range(READERS)]
            time.sleep(0.5)  # the reads are in the server before the other session starts
            assert worker.submit(other_session_works).result(timeout=60) == ("ok", 200)
            for read in reads:
                response = read.result(timeout=10)
                assert response.status_code == 400, response.text
                assert response.json()["error"] == "not_a_file"
        finally:
            _release(fifo)
            readers.shutdown(wait=True)
            worker.shutdown(wait=True)


def test_sockets_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with app_client(settings_for(None, tmp_path / "data", max_workspace_file_mb=1)) as client:
        session_id = _session(client, "odd files")
        root = client.app.state.svc.workspace(session_id)
        files = f"{API}/sessions/{session_id}/workspace/file"
        listener = socket.socket(socket.AF_UNIX)
        with contextlib.closing(listener), tempfile.TemporaryDirectory(dir="/tmp") as short:
            listener.bind(f"{short}/s")  # a workspace path is too long to bind to
            os.rename(f"{short}/s", root / "artifacts" / "sock")
            response = client.get(files, params={"path": "artifacts/sock"})
            assert (response.status_code, response.json()["error"]) == (400, "not_a_file")
        (root / "artifacts" / "big.bin").write_bytes(b"x" * ((1 << 20) + 1))
        big = client.get(files, params={"path": "artifacts/big.bin"})
        assert (big.status_code, big.json()["error"]) == (413, "too_large")
        (root / "artifacts" / "ok.bin").write_bytes(b"x" * (1 << 20))
        assert len(client.get(files, params={"path": "artifacts/ok.bin"}).content) == 1 << 20
