import hashlib
import inspect
import io
import json
import pickle
import random

import pytest
from pypdf import PdfReader, PdfWriter

from fleet_rlm.documents import (
    DocumentError,
    ExtractedDocument,
    extract,
    html_to_text,
    load_path,
)
from fleet_rlm.testing.documents import make_pdf


def encrypt_pdf(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def error(name: str, data: bytes, **kw) -> DocumentError:
    with pytest.raises(DocumentError) as info:
        extract(name, data, **kw)
    return info.value


# --- plain text and Markdown -----------------------------------------------------------------


def test_plain_text_fields():
    data = "Hello, wörld.\nSecond line\n".encode()
    doc = extract("notes.txt", data)
    assert doc.kind == "text"
    assert doc.name == "notes.txt"
    assert doc.text == "Hello, wörld.\nSecond line\n"
    assert doc.size_bytes == len(data) == 27
    assert doc.chars == len(doc.text) == 26
    assert doc.sha256 == hashlib.sha256(data).hexdigest()
    assert doc.pages is None


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.txt", "text"),
        ("a.TEXT", "text"),
        ("server.log", "text"),
        ("README.md", "markdown"),
        ("guide.markdown", "markdown"),
        ("script.py", "text"),
        ("Makefile", "text"),
    ],
)
def test_kind_from_extension(name, kind):
    assert extract(name, b"# title\nbody\n").kind == kind


def test_line_endings_normalised():
    doc = extract("a.md", b"one\r\ntwo\rthree\n")
    assert doc.text == "one\ntwo\nthree\n"
    assert doc.chars == 14


def test_empty_text_file_is_allowed():
    doc = extract("empty.txt", b"")
    assert (doc.text, doc.chars, doc.size_bytes) == ("", 0, 0)
    assert doc.sha256 == hashlib.sha256(b"").hexdigest()


def test_ansi_colours_in_logs_are_text():
    data = b"\x1b[31mERROR\x1b[0m failed\n" * 50
    assert extract("app.log", data).text.startswith("\x1b[31mERROR")


def test_document_is_frozen():
    doc = extract("a.txt", b"x")
    with pytest.raises(ValueError):
        doc.text = "changed"  # type: ignore[misc]
    assert isinstance(doc, ExtractedDocument)


# --- byte-order marks and encodings -----------------------------------------------------------


def test_utf8_bom_is_stripped_and_sha_is_of_original_bytes():
    data = b"\xef\xbb\xbfhello"
    doc = extract("bom.txt", data)
    assert doc.text == "hello"
    assert doc.chars == 5
    assert doc.size_bytes == 8
    assert doc.sha256 == hashlib.sha256(data).hexdigest()
    assert doc.sha256 != hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(codec):
    bom = b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff"
    data = bom + "Grüße\r\nzwei".encode(codec)
    doc = extract("u16.txt", data)
    assert doc.text == "Grüße\nzwei"
    assert doc.chars == 10


def test_utf32_with_bom():
    data = b"\xff\xfe\x00\x00" + "ok ✓".encode("utf-32-le")
    assert extract("u32.txt", data).text == "ok ✓"


def test_bom_before_json_and_html():
    assert extract("a.json", b'\xef\xbb\xbf{"a": 1}').text == '{\n  "a": 1\n}'
    doc = extract("page", b"\xef\xbb\xbf<!DOCTYPE html><p>hi</p>")
    assert (doc.kind, doc.text) == ("html", "hi")


def test_broken_utf8_is_bad_encoding_with_position():
    data = "✓ line\ncafé".encode() + b" \xe9"  # UTF-8, then a stray Latin-1 byte
    err = error("menu.txt", data)
    assert err.reason == "bad_encoding"
    assert isinstance(err, ValueError)
    assert "menu.txt is not valid UTF-8" in str(err)
    assert "0xE9" in str(err)
    assert "offset 15" in str(err) and "line 2" in str(err)
    assert "save it as UTF-8" in str(err)


def test_truncated_utf8_sequence():
    err = error("cut.txt", "abc € def €".encode()[:-1])
    assert err.reason == "bad_encoding"
    assert "offset 12" in str(err)


@pytest.mark.parametrize(("text", "codec", "label"), [
    ("line one\ncafé, naïve façade and a señor's résumé\n", "latin-1", "Windows-1252"),
    ("“Quoted” — 20 € for the café\n" * 20, "cp1252", "Windows-1252"),
    ("name,city\nJosé,Zürich\n", "cp1252", "Windows-1252"),
    ("Привет, как дела? Это тест кодировки.\n" * 10, "cp1251", "Windows-1251"),
])
def test_legacy_encodings_are_detected_converted_and_named(text, codec, label):
    doc = extract("legacy.csv" if text.startswith("name,") else "legacy.txt", text.encode(codec))
    assert doc.encoding == label
    assert doc.text.rstrip("\n") == text.replace("\r\n", "\n").rstrip("\n") \
        or doc.kind == "csv" and "José" in doc.text and "Zürich" in doc.text


def test_utf8_names_no_encoding():
    assert extract("a.txt", "café ✓".encode()).encoding is None
    assert extract("a.txt", b"plain ascii").encoding is None


def test_invalid_utf16_after_bom():
    err = error("bad16.txt", b"\xff\xfe" + "ok".encode("utf-16-le") + b"\x00\xd8")  # lone surrogate
    assert err.reason == "bad_encoding"
    assert "not valid UTF-16" in str(err)


def test_utf16_without_bom_gets_a_hint():
    err = error("export.csv", "name,value\n".encode("utf-16-le"))
    assert err.reason == "bad_encoding"
    assert "UTF-16" in str(err) and "byte-order mark" in str(err)


# --- binary ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "label"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image"),
        (b"\x7fELF\x02\x01\x01\x00", "ELF executable"),
        (b"PK\x03\x04\x14\x00\x00\x00", "ZIP archive"),
        (b"GIF89a\x01\x00\x01\x00", "GIF image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG image"),
        (b"\x1f\x8b\x08\x00", "gzip archive"),
    ],
)
@pytest.mark.parametrize("name", ["upload.txt", "upload", "upload.json"])
def test_known_binary_signature_is_named(header, label, name):
    err = error(name, header + b"rest of the file")
    assert err.reason == "binary"
    assert label in str(err)
    assert name in str(err)


def test_random_bytes_with_nuls_are_binary():
    data = random.Random(1).randbytes(4096)
    assert b"\x00" in data
    err = error("blob.dat", data)
    assert err.reason == "binary"
    assert "NUL" in str(err)


def test_random_bytes_without_nuls_are_binary_not_an_encoding_problem():
    rng = random.Random(2)
    data = bytes(rng.randrange(1, 256) for _ in range(4096))
    assert b"\x00" not in data
    err = error("blob.txt", data)
    assert err.reason == "binary"
    assert "control characters" in str(err)


def test_valid_utf8_full_of_control_characters_is_binary():
    data = b"ab\x01\x02\x03\x04\x05\x06" * 100
    data.decode("utf-8")
    assert error("weird.txt", data).reason == "binary"


def test_a_few_control_characters_are_still_text():
    data = b"a" * 1000 + b"\x07\x08"
    assert extract("beep.txt", data).chars == 1002


def test_short_text_starting_with_bm_is_not_a_bitmap():
    assert extract("note.txt", b"BM is a nice abbreviation").text == "BM is a nice abbreviation"


@pytest.mark.parametrize("name", ["report.docx", "sheet.XLSX", "slides.pptx", "old.doc"])
def test_office_formats_are_unsupported(name):
    err = error(name, b"PK\x03\x04\x14\x00" + b"\x00" * 20)
    assert err.reason == "unsupported"
    assert "export it as PDF or plain text" in str(err)


# --- size limit ------------------------------------------------------------------------------


def test_too_large_names_size_and_limit():
    err = error("big.txt", b"x" * 11, max_bytes=10)
    assert err.reason == "too_large"
    assert str(err) == "big.txt is 11 bytes, over the limit of 10 bytes"


def test_exactly_at_the_limit_is_fine():
    assert extract("fits.txt", b"x" * 10, max_bytes=10).size_bytes == 10


def test_too_large_in_megabytes():
    err = error("huge.log", b"a" * (3 * 1024 * 1024 // 2), max_bytes=1024 * 1024)
    assert "1.5 MB (1,572,864 bytes)" in str(err)
    assert str(err).endswith("over the limit of 1.0 MB (1,048,576 bytes)")


def test_size_is_checked_before_anything_else():
    assert error("x.png", b"\x89PNG\r\n\x1a\n" * 4, max_bytes=8).reason == "too_large"
    assert error("", b"xx", max_bytes=1).reason == "too_large"
    assert error("a.docx", b"xx", max_bytes=1).reason == "too_large"


def test_default_limit_is_200_mib():
    assert inspect.signature(extract).parameters["max_bytes"].default == 200 * 1024 * 1024
    assert inspect.signature(load_path).parameters["max_bytes"].default == 200 * 1024 * 1024


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "dir/", "..", ".", "/", "a/b/..", "\\"])
def test_empty_names_rejected(name):
    err = error(name, b"text")
    assert err.reason == "empty_name"
    assert "name" in str(err)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("a/b/../c.md", "c.md"),
        ("./notes.txt", "notes.txt"),
        ("My Report (final) v2.txt", "My Report (final) v2.txt"),
        ("  padded.txt  ", "padded.txt"),
        ("résumé.md", "résumé.md"),
        (".hidden", ".hidden"),
    ],
)
def test_directory_parts_stripped(given, kept):
    assert extract(given, b"hello").name == kept


def test_traversal_name_keeps_kind_of_its_base_name():
    doc = extract("../../tmp/evil.json", b"[1]")
    assert (doc.name, doc.kind) == ("evil.json", "json")


@pytest.mark.parametrize(
    "name", ["a\x00b.txt", "new\nline.txt", "tab\there.txt", "x" * 252 + ".txt", "é" * 128]
)
def test_unusable_names_rejected(name):
    assert error(name, b"text").reason == "bad_name"


def test_name_of_255_bytes_is_kept():
    name = "x" * 251 + ".txt"
    assert extract(name, b"text").name == name


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_single_page():
    data = make_pdf(["Hello PDF world"])
    doc = extract("paper.pdf", data)
    assert doc.kind == "pdf"
    assert doc.pages == 1
    assert doc.text == "--- page 1 ---\n\nHello PDF world"
    assert doc.chars == len(doc.text)
    assert doc.sha256 == hashlib.sha256(data).hexdigest()


def test_pdf_page_markers():
    doc = extract("two.pdf", make_pdf(["First page text", "Second page text"]))
    assert doc.pages == 2
    assert doc.text == "--- page 1 ---\n\nFirst page text\n\n--- page 2 ---\n\nSecond page text"


def test_pdf_sniffed_without_extension():
    doc = extract("download", make_pdf(["sniffed"]))
    assert doc.kind == "pdf"
    assert "sniffed" in doc.text


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.4\ngarbage garbage garbage",
        b"%PDF-",
        make_pdf(["Hello"])[:150],
    ],
)
def test_corrupt_pdf(data):
    err = error("broken.pdf", data)
    assert err.reason == "corrupt"
    assert str(err).startswith("broken.pdf is not a readable PDF: ")


def test_pdf_without_pages_is_corrupt():
    err = error("nopages.pdf", make_pdf(["x"]).replace(b"/Kids", b"/Kidz"))
    assert err.reason == "corrupt"
    assert "no pages" in str(err)


def test_pdf_extension_without_pdf_header():
    err = error("fake.pdf", b"just some text")
    assert err.reason == "corrupt"
    assert "%PDF-" in str(err)


def test_pdf_extension_on_an_image_names_the_image():
    err = error("scan.pdf", b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    assert err.reason == "binary"
    assert "PNG image" in str(err)


def test_password_protected_pdf_is_rejected():
    err = error("locked.pdf", encrypt_pdf(make_pdf(["top secret"]), user_password="pw"))
    assert err.reason == "corrupt"
    assert "password-protected" in str(err)
    assert "top secret" not in str(err)


def test_pdf_encrypted_with_empty_user_password_opens():
    doc = extract("owner-only.pdf", encrypt_pdf(make_pdf(["readable"]), user_password=""))
    assert doc.text == "--- page 1 ---\n\nreadable"


# --- JSON and JSON Lines ----------------------------------------------------------------------


def test_json_pretty_printed():
    value = {"name": "Zoë", "items": [1, 2, {"deep": True}], "none": None}
    doc = extract("data.json", json.dumps(value, separators=(",", ":")).encode())
    assert doc.kind == "json"
    assert doc.text == json.dumps(value, indent=2, ensure_ascii=False)
    assert '\n  "name": "Zoë"' in doc.text
    assert json.loads(doc.text) == value
    assert doc.chars == len(doc.text)


def test_invalid_json_reports_line_and_column():
    err = error("conf.json", b'{\n  "a": 1,\n  "b": \n}')
    assert err.reason == "corrupt"
    assert str(err) == "conf.json is not valid JSON: Expecting value at line 4, column 1"


def test_empty_json_is_corrupt():
    err = error("empty.json", b"")
    assert err.reason == "corrupt"
    assert "line 1, column 1" in str(err)


def test_deeply_nested_json_is_corrupt_not_a_crash():
    assert error("deep.json", b"[" * 100_000 + b"]" * 100_000).reason == "corrupt"


def test_jsonl_one_record_per_line():
    data = b'{"a": 1}\r\n\r\n  {"b": [1, 2]}  \n"text"\n'
    doc = extract("rows.jsonl", data)
    assert doc.kind == "json"
    assert doc.text == '{"a": 1}\n{"b": [1, 2]}\n"text"'


def test_jsonl_bad_line_reports_its_number():
    err = error("rows.jsonl", b'{"a": 1}\n{"b": 2}\n  {"c": }\n')
    assert err.reason == "corrupt"
    assert "line 3, column 9" in str(err)


def test_jsonl_is_not_parsed_as_one_document():
    # Two records would be invalid as one JSON document ("Extra data").
    assert extract("two.jsonl", b"1\n2\n").text == "1\n2"
    assert error("two.json", b"1\n2\n").reason == "corrupt"


# --- CSV and TSV ------------------------------------------------------------------------------


def test_csv_kept_with_normalised_line_endings():
    data = b'name,notes\r\nann,"multi\r\nline"\r\nbob,plain\r\n'
    doc = extract("people.csv", data)
    assert doc.kind == "csv"
    assert doc.text == 'name,notes\nann,"multi\nline"\nbob,plain\n'


def test_tsv():
    doc = extract("table.tsv", b"a\tb\n1\t2\n")
    assert (doc.kind, doc.text) == ("csv", "a\tb\n1\t2\n")


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b'a,b\n1,"x"y\n', "line 2"),
        (b'a,b\n1,"unterminated\n', "unexpected end of data"),
    ],
)
def test_unparseable_csv_is_corrupt(data, detail):
    err = error("bad.csv", data)
    assert err.reason == "corrupt"
    assert "bad.csv is not valid CSV" in str(err)
    assert detail in str(err)


def test_tsv_error_says_tsv():
    assert "not valid TSV" in str(error("bad.tsv", b'a\t"b"c\n'))


# --- HTML ------------------------------------------------------------------------------------

PAGE = b"""<!DOCTYPE html>
<html><head><title>The Title</title>
<style>body { color: red; }</style>
<script>var secret = "SCRIPT-TEXT";</script>
</head>
<body>
<noscript>NOSCRIPT-TEXT</noscript>
<h1>Main   Heading</h1>
<p>Read <a href="https://example.com/x">the   linked docs</a> first.<br>Then this.</p>
<!-- COMMENT-TEXT -->
<h2>List</h2>
<ul><li>alpha</li><li>beta
  <ol start="3"><li>gamma</li><li>delta</li></ol></li></ul>




<p>after many blank lines</p>
<table><tr><th>K</th><th>V</th></tr><tr><td>a</td><td>1</td></tr></table>
<pre>  keep
    this   spacing</pre>
<script type="module">import("STILL-SCRIPT")</script>
</body></html>
"""


def test_html_to_readable_text():
    doc = extract("page.html", PAGE)
    assert doc.kind == "html"
    assert doc.text == (
        "The Title\n\n"
        "# Main Heading\n\n"
        "Read the linked docs first.\nThen this.\n\n"
        "## List\n\n"
        "- alpha\n"
        "- beta\n"
        "  3. gamma\n"
        "  4. delta\n\n"
        "after many blank lines\n\n"
        "K | V\n"
        "a | 1\n\n"
        "  keep\n"
        "    this   spacing"
    )
    assert doc.chars == len(doc.text)


@pytest.mark.parametrize("hidden", ["SCRIPT-TEXT", "STILL-SCRIPT", "NOSCRIPT-TEXT", "COMMENT-TEXT"])
def test_html_drops_script_style_noscript_and_comments(hidden):
    assert hidden not in extract("page.htm", PAGE).text
    assert "color: red" not in extract("page.htm", PAGE).text


def test_html_collapses_blank_lines():
    text = html_to_text("<p>a</p>" + "<div><br><br><br><br></div>" * 5 + "<p>b</p>")
    assert "\n\n\n" not in text
    assert text == "a\n\nb"


@pytest.mark.parametrize(
    "start", [b"<!DOCTYPE html><p>x</p>", b"  \n<html><body><p>x</p></body></html>", b"<HTML>x"]
)
def test_html_sniffed_for_unknown_extension(start):
    doc = extract("saved_page", start)
    assert doc.kind == "html"
    assert doc.text == "x"


def test_explicit_text_extension_wins_over_sniffing():
    doc = extract("source.txt", b"<html><p>x</p></html>")
    assert (doc.kind, doc.text) == ("text", "<html><p>x</p></html>")


def test_html_entities_and_inline_whitespace():
    assert (
        html_to_text("<p>fish &amp; chips\n   &lt;tag&gt;&nbsp;ok</p>") == "fish & chips <tag> ok"
    )


def test_deeply_nested_html_does_not_exhaust_the_stack():
    doc = extract("deep.html", b"<div>" * 5000 + b"deep text" + b"</div>" * 5000)
    assert doc.text == "deep text"


def test_marker_characters_in_html_input_are_harmless():
    assert html_to_text("<p>a\x01b\x02c\x03d\x04e</p>") == "abcde"


# --- load_path -------------------------------------------------------------------------------


def test_load_path_reads_file(tmp_path):
    path = tmp_path / "notes.md"
    path.write_bytes(b"# Notes\r\nbody\r\n")
    doc = load_path(path)
    assert (doc.name, doc.kind, doc.text) == ("notes.md", "markdown", "# Notes\nbody\n")
    assert load_path(str(path)) == doc


def test_load_path_pdf(tmp_path):
    path = tmp_path / "doc.pdf"
    path.write_bytes(make_pdf(["on disk"]))
    assert load_path(path).text == "--- page 1 ---\n\non disk"


def test_load_path_missing(tmp_path):
    with pytest.raises(DocumentError) as info:
        load_path(tmp_path / "nope.txt")
    assert info.value.reason == "not_found"
    assert "no such file" in str(info.value) and "nope.txt" in str(info.value)


def test_load_path_directory(tmp_path):
    with pytest.raises(DocumentError) as info:
        load_path(tmp_path)
    assert info.value.reason == "is_directory"
    assert "is a directory" in str(info.value)


def test_load_path_too_large_checked_before_reading(tmp_path):
    path = tmp_path / "big.log"
    path.write_bytes(b"x" * 100)
    with pytest.raises(DocumentError) as info:
        load_path(path, max_bytes=99)
    assert info.value.reason == "too_large"
    assert str(info.value) == "big.log is 100 bytes, over the limit of 99 bytes"


def test_load_path_passes_through_extraction_errors(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8)
    with pytest.raises(DocumentError) as info:
        load_path(path)
    assert info.value.reason == "binary"


# --- the error type --------------------------------------------------------------------------


def test_error_survives_pickling():
    err = error("bad.json", b"{")
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.reason, copy.name, str(copy)) == (
        DocumentError,
        "corrupt",
        "bad.json",
        str(err),
    )
