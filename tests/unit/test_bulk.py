"""The host's side of value files: what a hostile sandbox may put in its outbox is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleet_rlm.sandbox.bulk import OUTBOX, Outbox, RefusedFile, merge, text_chunks, write_text


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work" / OUTBOX).mkdir(parents=True)
    return tmp_path / "work"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.json"
    path.write_text('{"args": ["the host\'s secret"], "kwargs": {}}')
    return path


def test_a_value_file_is_read_once_and_removed(work: Path) -> None:
    (work / OUTBOX / "12x1.json").write_text('{"value": [1, 2]}')
    outbox = Outbox(work, 1000)
    frame = {"type": "var"}
    merge(frame, outbox.take("12x1.json"))
    assert frame == {"type": "var", "value": [1, 2]}
    assert not (work / OUTBOX / "12x1.json").exists()
    with pytest.raises(RefusedFile, match="No such file"):
        outbox.take("12x1.json")


@pytest.mark.parametrize("name", ["../host-secret.json", "/etc/passwd", "a/1x1.json", "1x1.txt",
                                  "..", "", "1x1x1.json", "１x1.json", 7, None])
def test_a_name_that_is_not_a_value_file_is_refused(work: Path, name: object) -> None:
    with pytest.raises(RefusedFile, match="is not the name of a value file"):
        Outbox(work, 1000).take(name)


def test_a_link_to_a_host_file_is_not_followed(work: Path, secret: Path) -> None:
    (work / OUTBOX / "1x1.json").symlink_to(secret)
    with pytest.raises(RefusedFile, match="not a regular file"):
        Outbox(work, 1000).take("1x1.json")
    assert secret.exists() and (work / OUTBOX / "1x1.json").is_symlink()


def test_an_outbox_that_is_a_link_is_not_followed(work: Path, secret: Path) -> None:
    (work / OUTBOX).rmdir()
    (work / OUTBOX).symlink_to(secret.parent)
    (secret.parent / "1x1.json").write_text('{"value": "host data"}')
    with pytest.raises(RefusedFile, match="not a directory of the sandbox's own"):
        Outbox(work, 1000).take("1x1.json")
    assert (secret.parent / "1x1.json").exists()


def test_a_fifo_does_not_block_the_host(work: Path) -> None:
    os.mkfifo(work / OUTBOX / "1x1.json")
    with pytest.raises(RefusedFile, match="not a regular file"):
        Outbox(work, 1000).take("1x1.json")


def test_a_hard_link_is_refused(work: Path) -> None:
    (work / OUTBOX / "1x1.json").write_text('{"value": 1}')
    os.link(work / OUTBOX / "1x1.json", work / "elsewhere")
    with pytest.raises(RefusedFile, match="has 2 links"):
        Outbox(work, 1000).take("1x1.json")


def test_a_file_beyond_the_cap_is_not_read(work: Path) -> None:
    with open(work / OUTBOX / "1x1.json", "wb") as handle:
        handle.truncate(1 << 40)  # sparse: a terabyte on paper
    with pytest.raises(RefusedFile, match=f"holds {1 << 40} bytes, more than the 1000"):
        Outbox(work, 1000).take("1x1.json")


def test_a_directory_entry_is_refused(work: Path) -> None:
    (work / OUTBOX / "1x1.json").mkdir()
    with pytest.raises(RefusedFile, match="not a regular file"):
        Outbox(work, 1000).take("1x1.json")


@pytest.mark.parametrize(("frame", "data", "error"), [
    ({"type": "var"}, b"not json", "not JSON"),
    ({"type": "var"}, b"[1]", "cannot take"),
    ({"type": "var"}, b"{}", "cannot take"),
    ({"type": "var"}, b'{"type": "result"}', "cannot take"),
    ({"type": "result"}, b'{"value": 1}', "cannot take"),
    ({"type": "callback", "args": []}, b'{"args": [1]}', "cannot take"),
    ({"type": "ready"}, b'{"value": 1}', "cannot take"),
])
def test_a_file_may_fill_only_its_frames_bulk_fields(frame: dict, data: bytes,
                                                     error: str) -> None:
    before = dict(frame)
    with pytest.raises(RefusedFile, match=error):
        merge(frame, data)
    assert frame == before


def test_clear_removes_entries_without_following_them(work: Path, secret: Path) -> None:
    (work / OUTBOX / "1x1.json").write_text("{}")
    (work / OUTBOX / "2x1.json").symlink_to(secret)
    Outbox(work, 1000).clear()
    assert os.listdir(work / OUTBOX) == [] and secret.exists()


def test_text_is_written_a_slice_at_a_time_and_keeps_lone_surrogates(tmp_path: Path) -> None:
    text = "é\ud800" + "x" * (3 << 20)
    write_text(tmp_path / "v", text_chunks(text))
    assert (tmp_path / "v").read_bytes().decode("utf-8", "surrogatepass") == text
    with pytest.raises(FileExistsError):  # never over an existing file
        write_text(tmp_path / "v", text_chunks("x"))


def test_clear_removes_an_outbox_that_is_a_link_not_what_it_names(work: Path,
                                                                   secret: Path) -> None:
    (work / OUTBOX).rmdir()
    (work / OUTBOX).symlink_to(secret.parent)
    Outbox(work, 1000).clear()
    assert not (work / OUTBOX).exists() and not (work / OUTBOX).is_symlink()
    assert secret.exists()
