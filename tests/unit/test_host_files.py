"""Host files read for a tool's caller: regular files under the roots only, links followed to
where they lead, and a refusal that says why and names the roots."""

from __future__ import annotations

import os

import pytest

from fleet_rlm.documents import DocumentError
from fleet_rlm.host_files import read_under_roots, resolve_roots

LIMIT = 1024 * 1024


@pytest.fixture
def root(tmp_path):
    (tmp_path / "root" / "sub").mkdir(parents=True)
    (tmp_path / "root" / "sub" / "a.md").write_text("# A\n\ninside")
    (tmp_path / "outside.txt").write_text("secret outside")
    return tmp_path / "root"


def refused(path: str, roots) -> str:
    with pytest.raises(DocumentError) as caught:
        read_under_roots(path, roots, LIMIT)
    return str(caught.value)


def test_files_under_a_root_are_read_and_links_within_it_followed(root):
    roots = resolve_roots([root])
    assert read_under_roots(str(root / "sub" / "a.md"), roots, LIMIT)[1].endswith(b"inside")
    assert read_under_roots("sub/a.md", roots, LIMIT)[0] == "a.md"  # relative: the first root
    (root / "alias.md").symlink_to(root / "sub" / "a.md")
    assert read_under_roots(str(root / "alias.md"), roots, LIMIT)[0] == "a.md"


def test_everything_else_is_refused_naming_the_roots(root, tmp_path):
    roots = resolve_roots([root])
    (root / "out.txt").symlink_to(tmp_path / "outside.txt")
    (root / "up").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    for path in [str(tmp_path / "outside.txt"), str(root / "out.txt"),
                 str(root / "up" / "outside.txt"), "../outside.txt", "/etc/passwd",
                 str(root / "fifo")]:
        message = refused(path, roots)
        assert message.startswith(f"refused to read {path}: ") and str(root) in message, message
    assert "not a regular file" in refused(str(root / "fifo"), roots)
    assert "this server reads no files" in refused(str(root / "sub" / "a.md"), [])
    with pytest.raises(DocumentError, match="is a directory"):
        read_under_roots(str(root / "sub"), roots, LIMIT)
    with pytest.raises(ValueError, match="not a directory"):
        resolve_roots([tmp_path / "outside.txt"])
