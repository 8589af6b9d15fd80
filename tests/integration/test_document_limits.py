"""Untrusted documents are parsed in a process of their own within caps: a few kilobytes of PDF
that would take half a minute of CPU (a decompression bomb), a document that needs more memory or
makes more text than allowed, each end as a clear over_limit error at the cap; one tenant's bombs
run a few at a time and another tenant's upload goes through meanwhile."""

from __future__ import annotations

import os
import re
import resource
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
from test_server_support import API, settings_for, uvicorn_server
from typer.testing import CliRunner

from fleet_rlm.cli import app as cli_app
from fleet_rlm.documents import DocumentError
from fleet_rlm.extraction import ExtractionLimits, extract_bounded

MB = 1024 * 1024


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF of numbered objects (object 1 the catalog) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def text_pdf(pages: int, shows: int) -> bytes:
    """`pages` pages sharing one compressed content stream that shows a word `shows` times.
    With shows=200_000 it is 6 KB and each page takes seconds of CPU to extract."""
    content = zlib.compress(b"BT /F1 12 Tf " + b"(AAAAAAAA) Tj " * shows + b"ET", 9)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> >>")
    return _pdf([b"<< /Type /Catalog /Pages 2 0 R >>",
                 b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
                 b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (
                     len(content), content),
                 b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
                 *[page] * pages])


BOMB = text_pdf(pages=4, shows=200_000)
LIMITS = ExtractionLimits(max_bytes=10 * MB, cpu_s=2, memory_mb=2048, max_text_mb=64)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def test_a_pdf_bomb_costs_at_most_the_cpu_cap():
    assert len(BOMB) < 8 * 1024
    small = await extract_bounded("small.pdf", text_pdf(pages=2, shows=3), LIMITS)
    assert (small.kind, small.pages) == ("pdf", 2) and small.text.count("AAAAAAAA") == 6

    cpu = _children_cpu()
    with pytest.raises(DocumentError) as refused:
        await extract_bounded("bomb.pdf", BOMB, LIMITS)
    spent = _children_cpu() - cpu
    assert refused.value.reason == "over_limit"
    assert str(refused.value) == ("bomb.pdf: reading it needs more than 2 s of CPU "
                                  "(FLEET_EXTRACT_CPU_S)")
    # The cap, its one second of grace to the hard limit, and the child's start.
    assert spent < 2 + 1 + 2, spent


async def test_memory_and_text_caps_end_in_clear_errors():
    numbers = b"[" + b"0," * 5_000_000 + b"0]"  # 10 MB that parse into ~100 MB of objects
    with pytest.raises(DocumentError) as refused:
        await extract_bounded("numbers.json", numbers, ExtractionLimits(10 * MB, 10, 256, 64))
    assert (refused.value.reason, str(refused.value)) == (
        "over_limit", "numbers.json: reading it needs more than 256 MB of memory "
        "(FLEET_EXTRACT_MEMORY_MB)")
    roomy = ExtractionLimits(10 * MB, 60, 2048, 64)
    assert (await extract_bounded("numbers.json", numbers, roomy)).kind == "json"

    with pytest.raises(DocumentError) as refused:
        await extract_bounded("long.txt", b"word " * (MB // 2), ExtractionLimits(10 * MB, 10,
                                                                                  2048, 1))
    assert (refused.value.reason, str(refused.value)) == (
        "over_limit", "long.txt: its text is over 1 MB (FLEET_EXTRACT_MAX_TEXT_MB)")


def _fleet(data_dir: Path, *args: str) -> str:
    result = CliRunner().invoke(cli_app, list(args), env={"FLEET_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    return result.output


def _extractions() -> dict[int, bytes]:
    """Extraction processes started by this process now: pid -> environment."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and b"fleet_rlm.extraction" in (entry / "cmdline").read_bytes()
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                    == str(os.getpid())):
                found[int(entry.name)] = (entry / "environ").read_bytes()
        except OSError:
            continue
    return found


def test_one_tenants_bombs_run_two_at_a_time_and_do_not_starve_another_tenant(tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("FLEET_API_KEY", "sk-not-for-parsers")
    data = tmp_path / "data"
    _fleet(data, "users", "add", "mallory", "--tenant", "bombs")
    _fleet(data, "users", "add", "alice", "--tenant", "readers")
    tokens = {user: re.search(r"fleet_\S+", _fleet(data, "tokens", "create", user)).group()
              for user in ("mallory", "alice")}
    settings = settings_for(None, data, auth="token", extract_cpu_s=2, extract_concurrency=2)
    with uvicorn_server(settings) as base:
        clients = {user: httpx.Client(base_url=base + API, timeout=60,
                                      headers={"Authorization": f"Bearer {token}"})
                   for user, token in tokens.items()}
        sessions = {user: client.post("/sessions", json={"title": user}).json()["id"]
                    for user, client in clients.items()}

        def upload(user: str, name: str, data: bytes, results: list) -> None:
            response = clients[user].post(f"/sessions/{sessions[user]}/documents",
                                          files={"file": (name, data)})
            results.append((response, time.monotonic()))

        most, environments, done = 0, set(), threading.Event()

        def watch() -> None:
            nonlocal most
            while not done.is_set():
                seen = _extractions()
                most = max(most, len(seen))
                environments.update(seen.values())
                time.sleep(0.02)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        bombs: list = []
        threads = [threading.Thread(target=upload, args=("mallory", f"bomb{i}.pdf", BOMB, bombs),
                                    daemon=True) for i in range(4)]
        try:
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            assert len(_extractions()) == 2  # the other two wait for these
            fair: list = []
            upload("alice", "report.pdf", text_pdf(pages=1, shows=5), fair)
            for thread in threads:
                thread.join(60)
        finally:
            done.set()

    (response, answered), = fair
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "pdf"
    assert all(r.status_code == 422 and r.json()["error"] == "over_limit" for r, _ in bombs)
    assert "FLEET_EXTRACT_CPU_S" in bombs[0][0].json()["message"]
    assert most <= 3  # mallory's two, alice's one
    assert environments == {b""}  # no keys in reach of a parser
    # Alice was answered while mallory's bombs were still being refused, two at a time.
    assert answered < max(t for _, t in bombs)
