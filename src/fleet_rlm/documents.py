"""Uploaded documents to text: plain text, Markdown, PDF, JSON/JSONL, CSV/TSV and HTML.

`extract(name, data)` turns the bytes of one upload into an `ExtractedDocument` whose `text` is what
the RLM reads; `load_path(path)` does the same for a file on disk (the CLI's `/docs add PATH`).
Anything that cannot be read raises `DocumentError`, a `ValueError` whose message says what is wrong
and whose `reason` says which kind of problem it is.

Order of checks: size (before any other work), name, unsupported office formats, PDF, known binary
signatures, text decoding (UTF-8, or UTF-16/UTF-32 with a byte-order mark, or else a legacy
single-byte encoding such as Windows-1252 that charset-normalizer detects: converted, and named in
`encoding`), then the format itself.
Text of every kind has its line endings normalised to "\\n".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DocumentError",
    "DocumentErrorReason",
    "DocumentKind",
    "ExtractedDocument",
    "clean_name",
    "extract",
    "html_to_text",
    "load_path",
    "page_marker",
]

DEFAULT_MAX_BYTES = 200 * 1024 * 1024

DocumentKind: TypeAlias = Literal["text", "markdown", "pdf", "json", "csv", "html"]
DocumentErrorReason: TypeAlias = Literal[
    "too_large",
    "outside_roots",
    "binary",
    "unsupported",
    "corrupt",
    "empty_name",
    "bad_name",
    "bad_encoding",
    "not_found",
    "is_directory",
    "not_a_file",
    "unreadable",
    "over_limit",
]

READABLE = "text, Markdown, PDF, JSON, CSV and HTML"


class DocumentError(ValueError):
    """A document that cannot be turned into text. `str(err)` is a message fit for the user."""

    def __init__(self, message: str, reason: DocumentErrorReason, *, name: str | None = None):
        super().__init__(message)
        self.message = message
        self.reason: DocumentErrorReason = reason
        self.name = name

    def __reduce__(self):  # keeps reason and name across pickling (e.g. process pools)
        return (_rebuild_error, (self.message, self.reason, self.name))


def _rebuild_error(message: str, reason: DocumentErrorReason, name: str | None) -> DocumentError:
    return DocumentError(message, reason, name=name)


class ExtractedDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: DocumentKind
    text: str
    size_bytes: int
    chars: int
    sha256: str
    pages: int | None = None
    # The text's encoding when it was not UTF-8 (or ASCII): detected, and converted from.
    encoding: str | None = None


# --- kinds -----------------------------------------------------------------------------------

_KIND_BY_EXT: dict[str, DocumentKind] = {
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".pdf": "pdf",
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".html": "html",
    ".htm": "html",
}

_UNSUPPORTED_EXT = {
    ".doc": "Word document",
    ".docx": "Word document",
    ".odt": "OpenDocument text",
    ".xls": "Excel spreadsheet",
    ".xlsx": "Excel spreadsheet",
    ".ods": "OpenDocument spreadsheet",
    ".ppt": "PowerPoint presentation",
    ".pptx": "PowerPoint presentation",
    ".odp": "OpenDocument presentation",
    ".epub": "EPUB book",
    ".pages": "Pages document",
    ".numbers": "Numbers spreadsheet",
    ".key": "Keynote presentation",
}

# Signatures of common binary formats, checked against the first bytes.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"PK\x05\x06", "ZIP archive"),
    (b"PK\x07\x08", "ZIP archive"),
    (b"\x7fELF", "ELF executable"),
    (b"\x1f\x8b", "gzip archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "Zstandard archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\xcf\xfa\xed\xfe", "Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "Mach-O or Java class file"),
    (b"\x00asm", "WebAssembly module"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Office document"),
    (b"OggS", "Ogg media file"),
    (b"fLaC", "FLAC audio"),
    (b"ID3", "MP3 audio"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (b"BM", "BMP image"),
)
_RIFF_TYPES = {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}

_BOMS: tuple[tuple[bytes, str, str], ...] = (  # UTF-32 first: its LE mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8"),
    (b"\xff\xfe", "utf-16", "UTF-16"),
    (b"\xfe\xff", "utf-16", "UTF-16"),
)

# Control characters that do not occur in text (tab, newlines, form feed and ESC are allowed).
_CONTROL_CHARS = re.compile("[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
_CONTROL_BYTES = re.compile(b"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_CONTROL_RATIO = 0.05
_SAMPLE = 64 * 1024
_DETECT_SAMPLE = 256 * 1024
# Legacy encodings a text file may be in, most common first (Python's codec names).
_LEGACY = ("cp1252", "latin_1", "iso8859_15", "cp1250", "cp1251", "cp1253", "cp1254", "cp1257",
           "koi8_r", "mac_roman", "shift_jis", "euc_jp", "gb18030", "big5", "euc_kr")
# Python's codec names as people know them.
_ENCODING_NAMES = {"cp1252": "Windows-1252", "latin_1": "Latin-1 (ISO-8859-1)",
                   "iso8859_15": "Latin-9 (ISO-8859-15)", "cp1250": "Windows-1250",
                   "cp1251": "Windows-1251", "mac_roman": "Mac Roman"}
_HTML_START = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)[\s>]", re.I | re.S)
_MAX_NAME_BYTES = 255


def extract(name: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> ExtractedDocument:
    """The text of one uploaded document. Raises DocumentError if it cannot be read."""
    data = bytes(data)
    if len(data) > max_bytes:
        shown = _display_name(name)
        raise DocumentError(
            f"{shown} is {_size(len(data))}, over the limit of {_size(max_bytes)}",
            "too_large",
            name=shown,
        )
    name = clean_name(name)
    kind = _detect_kind(name, data)
    digest = hashlib.sha256(data).hexdigest()

    pages: int | None = None
    encoding: str | None = None
    if kind == "pdf":
        text, pages = _pdf_text(name, data)
    else:
        decoded, encoding = _decode(name, data)
        raw = _normalise_newlines(decoded)
        if kind == "json":
            text = _jsonl_text(name, raw) if _ext(name) == ".jsonl" else _json_text(name, raw)
        elif kind == "csv":
            text = _csv_text(name, raw, "\t" if _ext(name) == ".tsv" else ",")
        elif kind == "html":
            text = html_to_text(raw)
        else:
            text = raw
    return ExtractedDocument(
        name=name,
        kind=kind,
        text=text,
        size_bytes=len(data),
        chars=len(text),
        sha256=digest,
        pages=pages,
        encoding=encoding,
    )


def load_path(
    path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> ExtractedDocument:
    """Read and extract a document from disk; the size limit is checked before reading."""
    p = Path(path).expanduser()
    shown = str(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise DocumentError(f"no such file: {shown}", "not_found", name=p.name) from None
    except NotADirectoryError:
        raise DocumentError(f"no such file: {shown}", "not_found", name=p.name) from None
    except OSError as e:
        raise DocumentError(
            f"cannot read {shown}: {e.strerror or e}", "unreadable", name=p.name
        ) from None
    if p.is_dir():
        raise DocumentError(
            f"{shown} is a directory; add the files in it one by one", "is_directory", name=p.name
        )
    if not p.is_file():
        raise DocumentError(f"{shown} is not a regular file", "not_a_file", name=p.name)
    if st.st_size > max_bytes:
        raise DocumentError(
            f"{p.name} is {_size(st.st_size)}, over the limit of {_size(max_bytes)}",
            "too_large",
            name=p.name,
        )
    try:
        # One byte past the limit is enough to notice a file that grew since stat().
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise DocumentError(
            f"cannot read {shown}: {e.strerror or e}", "unreadable", name=p.name
        ) from None
    return extract(p.name, data, max_bytes=max_bytes)


# --- names -----------------------------------------------------------------------------------


def clean_name(name: str) -> str:
    """The file name without any directory parts; DocumentError if nothing usable is left."""
    if not isinstance(name, str):
        raise DocumentError("a document name must be a string", "bad_name")
    base = re.split(r"[/\\]", name.strip())[-1].strip()
    if base in ("", ".", ".."):
        raise DocumentError(
            f"a document needs a file name (got {name!r})" if name else "a document needs a name",
            "empty_name",
        )
    if _CONTROL_CHARS.search(base) or "\n" in base or "\r" in base or "\t" in base:
        raise DocumentError(f"the document name {name!r} contains control characters", "bad_name")
    if len(base.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise DocumentError(
            f"the document name is too long ({len(base)} characters; at most "
            f"{_MAX_NAME_BYTES} bytes)",
            "bad_name",
        )
    return base


def _display_name(name: object) -> str:
    try:
        return clean_name(name)  # type: ignore[arg-type]
    except DocumentError:
        return "the document"


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()


# --- detection and decoding ------------------------------------------------------------------


def _detect_kind(name: str, data: bytes) -> DocumentKind:
    ext = _ext(name)
    if ext in _UNSUPPORTED_EXT:
        raise DocumentError(
            f"{name}: {_UNSUPPORTED_EXT[ext]}s are not supported; export it as PDF or plain "
            f"text (supported: {READABLE})",
            "unsupported",
            name=name,
        )
    if data.startswith(b"%PDF-"):
        return "pdf"
    binary = _binary_type(data)
    if binary is not None:
        raise DocumentError(
            f"{name} looks like a {binary}, not a document; supported: {READABLE}",
            "binary",
            name=name,
        )
    kind = _KIND_BY_EXT.get(ext)
    if kind == "pdf":
        raise DocumentError(
            f"{name} is not a valid PDF: it does not start with %PDF-", "corrupt", name=name
        )
    if kind is not None:
        return kind
    if _HTML_START.match(data.removeprefix(b"\xef\xbb\xbf")[:4096]):
        return "html"
    return "text"


def _binary_type(data: bytes) -> str | None:
    for magic, label in _MAGIC:
        if data.startswith(magic):
            if label == "BMP image" and not _looks_like_bmp(data):
                continue
            if label == "MP3 audio" and len(data) > 3 and data[3] > 4:
                continue
            return label
    if data.startswith(b"RIFF") and data[8:12] in _RIFF_TYPES:
        return _RIFF_TYPES[data[8:12]]
    return None


def _looks_like_bmp(data: bytes) -> bool:
    # "BM" alone is too common a text prefix: require the header's file size and reserved zeros.
    if len(data) < 14:
        return False
    return int.from_bytes(data[2:6], "little") == len(data) and data[6:10] == b"\0\0\0\0"


def _decode(name: str, data: bytes) -> tuple[str, str | None]:
    """The text, and the encoding it was converted from when it was not UTF-8."""
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as e:
                raise _encoding_error(name, data, e, label) from None
            _check_text(name, text)
            return text, (None if codec == "utf-8-sig" else label)

    if b"\x00" in data:
        if _looks_like_utf16(data):
            raise DocumentError(
                f"{name} looks like UTF-16 text without a byte-order mark; save it as UTF-8 "
                "and try again",
                "bad_encoding",
                name=name,
            )
        raise DocumentError(
            f"{name} looks like binary data (it contains NUL bytes), not a document; "
            f"supported: {READABLE}",
            "binary",
            name=name,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        sample = data[:_SAMPLE]
        if sample and len(_CONTROL_BYTES.findall(sample)) / len(sample) > _CONTROL_RATIO:
            raise _binary_control_error(name) from None
        return _legacy_text(name, data, e)
    _check_text(name, text)
    return text, None


def _legacy_text(name: str, data: bytes, error: UnicodeDecodeError) -> tuple[str, str]:
    """Text in a single-byte legacy encoding (Latin-1, Windows-1252, ...): detected by
    charset-normalizer on a sample (the start, and around the first byte UTF-8 refused), then
    the whole converted; real binaries were refused before this."""
    from charset_normalizer import from_bytes

    if not data[:error.start].isascii():  # UTF-8 before the bad byte: broken UTF-8, not legacy
        raise _encoding_error(name, data, error, "UTF-8") from None
    around = data[max(0, error.start - _DETECT_SAMPLE // 2): error.start + _DETECT_SAMPLE // 2]
    sample = data[:_DETECT_SAMPLE] + b"\n" + around
    # Its guesses among the encodings people still write in; on a tie (Western text reads
    # the same in Windows-1250 and -1252) the more common encoding wins.
    def rank(codec: str) -> int:
        return _LEGACY.index(codec) if codec in _LEGACY else len(_LEGACY)

    # A match stands for every encoding that reads the sample the same (could_be_from_charset).
    guesses = sorted((round(m.chaos, 2), -round(m.coherence, 2),
                      min((rank(c), c) for c in [m.encoding, *m.could_be_from_charset]))
                     for m in from_bytes(sample, cp_isolation=list(_LEGACY)))
    codec = guesses[0][2][1] if guesses else None
    if codec is None:
        raise _encoding_error(name, data, error, "UTF-8") from None
    try:
        text = data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        raise _encoding_error(name, data, error, "UTF-8") from None
    _check_text(name, text)
    return text, _ENCODING_NAMES.get(codec, codec)


def _check_text(name: str, text: str) -> None:
    if "\x00" in text:
        raise DocumentError(
            f"{name} looks like binary data (it contains NUL characters), not a document; "
            f"supported: {READABLE}",
            "binary",
            name=name,
        )
    sample = text[:_SAMPLE]
    if sample and len(_CONTROL_CHARS.findall(sample)) / len(sample) > _CONTROL_RATIO:
        raise _binary_control_error(name)


def _binary_control_error(name: str) -> DocumentError:
    return DocumentError(
        f"{name} looks like binary data (too many control characters), not a document; "
        f"supported: {READABLE}",
        "binary",
        name=name,
    )


def _encoding_error(name: str, data: bytes, e: UnicodeDecodeError, label: str) -> DocumentError:
    bad = data[e.start : e.start + 1]
    line = data.count(b"\n", 0, e.start) + 1
    what = f"byte 0x{bad.hex().upper()}" if bad else "truncated data"
    return DocumentError(
        f"{name} is not valid {label} text ({what} at offset {e.start}, line {line}); "
        "save it as UTF-8 and try again",
        "bad_encoding",
        name=name,
    )


def _looks_like_utf16(data: bytes) -> bool:
    sample = data[:4096]
    if len(sample) < 4:
        return False
    sample = sample[: len(sample) // 2 * 2]
    even, odd = sample[0::2], sample[1::2]
    for zeros, chars in ((odd, even), (even, odd)):
        if zeros.count(0) >= 0.9 * len(zeros) and chars.count(0) <= 0.1 * len(chars):
            return True
    return False


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} byte" if n == 1 else f"{n} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit} ({n:,} bytes)"
    raise AssertionError("unreachable")


# --- formats ---------------------------------------------------------------------------------


def page_marker(number: int) -> str:
    return f"--- page {number} ---"


def _pdf_text(name: str, data: bytes) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    def corrupt(why: str) -> DocumentError:
        return DocumentError(f"{name} is not a readable PDF: {why}", "corrupt", name=name)

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except DependencyError as e:
                raise corrupt(
                    f"it is encrypted in a way that cannot be opened here ({e})"
                ) from None
            if not opened:
                raise corrupt("it is password-protected; remove the password and try again")
        count = len(reader.pages)
    except (DocumentError, MemoryError):  # MemoryError: a cap, reported as such by the caller
        raise
    except Exception as e:  # noqa: BLE001 - pypdf raises many types for damaged files
        raise corrupt(f"the file is damaged or truncated ({_exc_text(e)})") from None
    if count == 0:
        raise corrupt("it has no pages")

    parts: list[str] = []
    for number in range(1, count + 1):
        try:
            page_text = reader.pages[number - 1].extract_text() or ""
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - as above, for one damaged page
            raise corrupt(f"page {number} cannot be read ({_exc_text(e)})") from None
        page_text = _normalise_newlines(page_text).strip()
        head = f"{page_marker(number)}\n\n" if number == 1 else f"\n\n{page_marker(number)}\n\n"
        parts.append(head + page_text)
    return "".join(parts), count


def _exc_text(e: BaseException) -> str:
    return str(e).strip() or type(e).__name__


def _json_text(name: str, text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise DocumentError(
            f"{name} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}",
            "corrupt",
            name=name,
        ) from None
    except (ValueError, RecursionError) as e:
        raise DocumentError(
            f"{name} is not usable JSON: {_exc_text(e)}", "corrupt", name=name
        ) from None
    try:
        return json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError) as e:
        raise DocumentError(
            f"{name} is not usable JSON: {_exc_text(e)}", "corrupt", name=name
        ) from None


def _jsonl_text(name: str, text: str) -> str:
    records: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        record = line.strip()
        if not record:
            continue
        try:
            json.loads(record)
        except json.JSONDecodeError as e:
            column = e.colno + (len(line) - len(line.lstrip()))
            raise DocumentError(
                f"{name} is not valid JSON Lines: {e.msg} at line {lineno}, column {column}",
                "corrupt",
                name=name,
            ) from None
        except (ValueError, RecursionError) as e:
            raise DocumentError(
                f"{name} is not usable JSON Lines: line {lineno}: {_exc_text(e)}",
                "corrupt",
                name=name,
            ) from None
        records.append(record)
    return "\n".join(records)


def _csv_text(name: str, text: str, delimiter: str) -> str:
    label = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        for _row in reader:
            pass
    except csv.Error as e:
        raise DocumentError(
            f"{name} is not valid {label}: {e} (line {reader.line_num})", "corrupt", name=name
        ) from None
    return text


# --- HTML ------------------------------------------------------------------------------------

_DROP_TAGS = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "head"}
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "nav", "aside", "main",
        "blockquote", "table", "ul", "ol", "dl", "form", "fieldset", "figure", "address",
        "details", "hgroup", "center", "body", "html",
    }
)  # fmt: skip
_LINE_TAGS = frozenset(
    {"tr", "dt", "dd", "caption", "figcaption", "summary", "legend", "title", "option", "label"}
)

# Markers used while building the text; removed from the input first, so they cannot clash.
_NL = "\x01"  # line break
_PARA = "\x02"  # blank line
_INDENT = "\x03"  # two spaces of list indentation
_PRE = "\x04"  # placeholder for a <pre> block (followed by its index and another _PRE)
_MARKERS = re.compile("[\x01-\x04]")


def html_to_text(html: str) -> str:
    """Readable text of an HTML page: headings and list items on their own lines, link text kept,
    script/style/noscript dropped, at most one blank line in a row."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_MARKERS.sub("", html), "html.parser")
    head_title = soup.title.get_text(" ", strip=True) if soup.title else ""

    out: list[str] = []
    pres: list[str] = []
    if head_title and soup.title is not None and soup.title.find_parent("head") is not None:
        out += [head_title, _PARA]
    _walk_html(soup, out, pres)

    text = "".join(out)
    text = re.sub(r"[ \t\f\v\u00a0\u200b]+", " ", text)
    blocks: list[str] = []
    for segment in text.split(_PARA):
        # Structural breaks (_NL) never leave an empty line; <br> ("\n") can, up to one.
        lines = [line for line in segment.split(_NL) if line.strip()]
        block = "\n".join(
            part.strip().replace(_INDENT, "  ") for line in lines for part in line.split("\n")
        )
        if block.strip():
            blocks.append(block.strip("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n\n".join(blocks))
    if pres:
        text = re.sub(_PRE + r"(\d+)" + _PRE, lambda m: pres[int(m.group(1))], text)
    return text


def _walk_html(root, out: list[str], pres: list[str]) -> None:
    from bs4 import (
        CData,
        Comment,
        Declaration,
        Doctype,
        NavigableString,
        ProcessingInstruction,
        Tag,
    )

    skip_strings = (Comment, Declaration, Doctype, ProcessingInstruction)
    # Iterative, so deeply nested markup cannot exhaust the Python stack.
    # Items: ("emit", text), ("children", element, list_depth) or ("node", element, list_depth)
    # with an optional fourth item, the bullet of a list item.
    stack: list[tuple] = [("children", root, 0)]
    while stack:
        item = stack.pop()
        if item[0] == "emit":
            out.append(item[1])
            continue
        if item[0] == "children":
            _, node, depth = item
            stack.extend(("node", child, depth) for child in reversed(list(node.children)))
            continue
        _, node, depth, *bullet = item
        if isinstance(node, NavigableString):
            if isinstance(node, skip_strings) and not isinstance(node, CData):
                continue
            out.append(re.sub(r"\s+", " ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        tag = node.name.lower() if node.name else ""
        if tag in _DROP_TAGS:
            continue
        if tag == "br":
            out.append("\n")
        elif tag == "hr":
            out.append(_PARA)
        elif tag == "pre":
            pres.append(_normalise_newlines(node.get_text()).strip("\n"))
            out += [_PARA, f"{_PRE}{len(pres) - 1}{_PRE}", _PARA]
        elif tag in _HEADINGS:
            stack += [("emit", _PARA), ("children", node, depth)]
            out += [_PARA, "#" * _HEADINGS[tag] + " "]
        elif tag in ("ul", "ol"):
            items: list[tuple] = []
            number = _ol_start(node) if tag == "ol" else 0
            for child in node.children:
                if isinstance(child, Tag) and child.name == "li":
                    marker = f"{number}. " if tag == "ol" else "- "
                    number += 1
                    items.append(("node", child, depth, marker))
                else:
                    items.append(("node", child, depth))
            stack.append(("emit", _NL if depth else _PARA))
            stack.extend(reversed(items))
            out.append(_NL if depth else _PARA)
        elif tag == "li":
            stack += [("emit", _NL), ("children", node, depth + 1)]
            out += [_NL, _INDENT * depth + (bullet[0] if bullet else "- ")]
        elif tag == "tr":
            cells = [c for c in node.children if isinstance(c, Tag) and c.name in ("td", "th")]
            row: list[tuple] = [("emit", _NL)]
            for i, cell in enumerate(cells):
                if i:
                    row.append(("emit", " | "))
                row.append(("children", cell, depth))
            row.append(("emit", _NL))
            stack.extend(reversed(row))
        elif tag in _PARAGRAPH_TAGS:
            stack += [("emit", _PARA), ("children", node, depth)]
            out.append(_PARA)
        elif tag in _LINE_TAGS:
            stack += [("emit", _NL), ("children", node, depth)]
            out.append(_NL)
        elif tag in ("td", "th"):
            stack += [("emit", " "), ("children", node, depth)]
            out.append(" ")
        else:
            stack.append(("children", node, depth))
    return None


def _ol_start(node) -> int:
    try:
        return int(str(node.get("start", "1")).strip())
    except ValueError:
        return 1
