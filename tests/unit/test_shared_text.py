"""SharedText: a byte range of a UTF-8 file, measured and previewed without reading it all."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_rlm.sandbox.shared import RefusedReference, SharedText, resolve, well_formed

TEXT = "".join(f"ligne {i} — é€😀\n" for i in range(200_000))  # 1, 2, 3 and 4-byte characters


@pytest.fixture
def shared(tmp_path: Path) -> SharedText:
    path = tmp_path / "context.text"
    data = TEXT.encode()
    path.write_bytes(data)
    return SharedText(path, 0, len(data), ascii=False)


def test_its_length_and_ends_are_those_of_the_text(shared):
    assert shared.chars() == len(TEXT)
    assert shared.ends(500) == (TEXT[:500], TEXT[-500:])
    assert shared.read() == TEXT


def test_a_part_is_the_slice_of_those_bytes(shared):
    start = len(TEXT[:1234].encode())
    stop = start + len(TEXT[1234:99_999].encode())
    part = shared.part(start, stop)
    assert part.read() == TEXT[1234:99_999] and part.chars() == 99_999 - 1234
    assert part.ends(3) == (TEXT[1234:1237], TEXT[99_996:99_999])
    dash = len(TEXT[:TEXT.index("—")].encode())
    with pytest.raises(RefusedReference, match="on characters"):
        shared.part(dash + 1, stop)  # inside "—"
    with pytest.raises(RefusedReference, match="outside"):
        part.part(0, part.size + 1)


def test_references_put_what_they_name_in_place(shared):
    args: list = [None, ["x", None]]
    kwargs: dict = {"context": None}
    a, b = len(TEXT[:10].encode()), len(TEXT[:20].encode())
    refs = [[["args", 0], "context", 0, a], [["args", 1, 1], "context", a, b],
            [["kwargs", "context"], "context", 0, shared.size]]
    assert well_formed(refs)
    resolve(args, kwargs, refs, {"context": shared}, as_text=True)
    assert args == [TEXT[:10], ["x", TEXT[10:20]]]
    assert kwargs == {"context": TEXT}


@pytest.mark.parametrize("refs", ["x", [["args", "c", 0, 1]], [[["other", 0], "c", 0, 1]],
                                  [[["args", 0], "c", True, 1]], [[["args"], "c", 0, 1]],
                                  [[["args", 0], "c", 0, 1]] * 257])
def test_malformed_references_are_told_apart(refs):
    assert not well_formed(refs)
