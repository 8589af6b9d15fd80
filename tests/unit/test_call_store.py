"""The call store: texts cut by content and kept once, read back whole, redacted, capped."""

from __future__ import annotations

import os
import random
import time

from fleet_rlm.capture import CapturedCall
from fleet_rlm.redaction import remember
from fleet_rlm.store.calls import INLINE_CHARS, MAX_CHUNK, CallStore, chunks


def _document(lines: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "needle", "hay", "stack", "river"]
    return "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) + "\n"
                   for _ in range(lines))


def _call(call_id: str, *contents: str, reply: str | None = "ok", turn: str = "turn1"
          ) -> CapturedCall:
    return CapturedCall(call_id=call_id, turn_id=turn, node_id="n", role="root",
                        model="openai/root", params={"temperature": 0.0},
                        messages=[{"role": "system", "content": "You are careful."}]
                        + [{"role": "user", "content": c} for c in contents], reply=reply)


def _stored_bytes(store: CallStore) -> int:
    return sum(p.stat().st_size for p in (store.root / "chunks").rglob("*.txt"))


def test_chunks_rejoin_and_a_shared_beginning_is_cut_the_same_way():
    text = _document(5000)
    pieces = chunks(text)
    assert "".join(pieces) == text and max(map(len, pieces)) <= MAX_CHUNK and len(pieces) > 5
    longer = chunks(text + _document(300, seed=2))
    assert longer[:len(pieces) - 1] == pieces[:-1]
    one_line = "x" * (3 * MAX_CHUNK + 5)  # no line ends at all
    assert "".join(chunks(one_line)) == one_line and len(chunks(one_line)) == 4


def test_the_same_document_in_every_prompt_is_stored_once(tmp_path):
    store = CallStore(tmp_path)
    document = _document(8000)
    history = ""
    for k in range(6):  # each iteration: the document, and a history growing by a step
        history += f"step {k}: " + _document(40, seed=10 + k)
        assert store.save(_call(f"c{k}", document, history)) is None
    new_text = len(document) + len(history)
    assert _stored_bytes(store) < 1.3 * new_text  # not six documents, not six histories
    back = store.read("turn1", "c5")
    assert back is not None and [m["content"] for m in back["messages"]] == [
        "You are careful.", document, history]
    assert back["reply"] == "ok" and back["params"] == {"temperature": 0.0}
    assert store.turn_calls("turn1") == [f"c{k}" for k in range(6)]


def test_secrets_never_reach_the_disk(tmp_path):
    secret = "provider-key-0123456789"
    remember(secret)
    store = CallStore(tmp_path)
    long_text = _document(500) + f"the key is {secret}\n" + _document(500, seed=3)
    short_text = f"Authorization: Bearer abcdefghijklmnop and {secret}"
    call = CapturedCall(call_id="c1", turn_id="t1", node_id="n", role="sub", model="m",
                        params={"api_base": f"http://h/?token={secret}"},
                        messages=[{"role": "user", "content": long_text},
                                  {"role": "user", "content": short_text}],
                        reply=f"echo {secret}", error=f"failed with {secret}")
    assert store.save(call) is None
    on_disk = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert secret not in on_disk and "abcdefghijklmnop" not in on_disk
    back = store.read("t1", "c1")
    assert back is not None and "the key is ***" in back["messages"][0]["content"]
    assert back["reply"] == "echo ***" and "***" in back["error"]


def test_caps_and_faults_are_answered_with_a_reason_never_raised(tmp_path):
    small = CallStore(tmp_path / "a", max_call_mb=0.01)
    reason = small.save(_call("c1", "x" * 20_000))
    assert reason and "FLEET_CAPTURE_MAX_CALL_MB" in reason
    assert small.read("turn1", "c1") is None

    full = CallStore(tmp_path / "b", max_store_mb=0.05)
    assert full.save(_call("c1", _document(400))) is None
    reason = full.save(_call("c2", _document(800, seed=4)))
    assert reason and "the call store is full" in reason
    assert full.save(_call("c3", "short")) is None  # small records still fit

    (tmp_path / "c").write_text("not a folder")
    reason = CallStore(tmp_path / "c").save(_call("c1", "hello"))
    assert reason and reason.startswith("the call store is unwritable")


def test_a_removed_chunk_reads_as_a_note_and_removed_turns_are_gone(tmp_path):
    store = CallStore(tmp_path)
    text = _document(600)
    assert len(text) > INLINE_CHARS and store.save(_call("c1", text)) is None
    victim = next((tmp_path / "chunks").rglob("*.txt"))
    victim.unlink()
    back = store.read("turn1", "c1")
    assert back is not None and "no longer stored" in back["messages"][1]["content"]
    store.remove_turns(["turn1"])
    assert store.read("turn1", "c1") is None and store.turn_calls("turn1") == []
    assert store.read("../etc", "passwd") is None


def test_no_chunk_cut_splits_a_credential_the_redaction_would_mask(tmp_path):
    store = CallStore(tmp_path)
    rng = random.Random(7)
    lines = []
    for k in range(3000):  # a bearer header whose token is on the next line, many times
        lines.append(f"header {k}: Authorization: Bearer\n")
        lines.append("".join(rng.choice("abcdefghijklmnop") for _ in range(24)) + " ok\n")
    keys = " ".join(f"sk-{k:020d}" for k in range(12_000))  # one line of keys, past a chunk
    assert store.save(_call("c1", "".join(lines), keys)) is None
    back = store.read("turn1", "c1")
    assert back is not None
    headers, line_of_keys = back["messages"][1]["content"], back["messages"][2]["content"]
    assert headers.count("Bearer\n*** ok") == 3000
    assert line_of_keys.count("sk-***") == 12_000 and "sk-0" not in line_of_keys


def test_chunks_no_call_refers_to_are_collected_after_a_grace(tmp_path):
    store = CallStore(tmp_path)
    shared, own = _document(600, seed=1), _document(600, seed=2)
    assert store.save(_call("c1", shared, own, turn="gone")) is None
    assert store.save(_call("c2", shared, turn="kept")) is None
    store.remove_turns(["gone"])
    assert store.collect_chunks() == (0, 0)  # young chunks stay: a record may be on its way
    removed, freed = store.collect_chunks(grace_s=0)
    assert removed == len(chunks(own)) and freed > 0
    back = store.read("kept", "c2")
    assert back is not None and back["messages"][1]["content"] == shared
    assert store.save(_call("c3", own, turn="again")) is None  # written again, not remembered
    assert store.read("again", "c3")["messages"][1]["content"] == own


def test_a_chunk_a_new_call_sends_again_is_not_collected(tmp_path):
    store = CallStore(tmp_path)
    text = _document(600, seed=5)
    assert store.save(_call("c1", text, turn="gone")) is None
    store.remove_turns(["gone"])
    for path in (tmp_path / "chunks").rglob("*.txt"):  # an hour old
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    assert store.save(_call("c2", text, turn="new")) is None  # the same text, sent again
    store.remove_turns(["new"])  # its record not yet read by the collector, say
    assert store.collect_chunks() == (0, 0)


def test_fleet_db_gc_calls_reports_what_it_removed(tmp_path):
    from typer.testing import CliRunner

    from fleet_rlm.cli import app

    store = CallStore(tmp_path / "calls")
    assert store.save(_call("c1", _document(600, seed=9), turn="gone")) is None
    store.remove_turns(["gone"])
    for path in (tmp_path / "calls" / "chunks").rglob("*.txt"):
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    result = CliRunner().invoke(app, ["db", "gc-calls"], env={"FLEET_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and "removed 0 " not in result.output
    assert not list((tmp_path / "calls" / "chunks").rglob("*.txt"))


def test_a_full_store_first_drops_what_deleted_sessions_left(tmp_path):
    """One tenant's deleted imports cannot keep every other tenant's calls out of the store."""
    own, other = _document(600, seed=7), _document(600, seed=8)
    store = CallStore(tmp_path, max_store_mb=(len(own.encode()) * 1.5) / (1024 * 1024))
    assert store.save(_call("c1", own, turn="deleted")) is None
    store.remove_turns(["deleted"])
    for path in (tmp_path / "chunks").rglob("*.txt"):  # past the grace a write may need
        os.utime(path, (time.time() - 120, time.time() - 120))
    assert store.save(_call("c2", other, turn="someone_else")) is None
    assert store.read("someone_else", "c2")["messages"][1]["content"] == other
    # Full with calls still kept: said, and not collected again at once.
    assert "full" in (store.save(_call("c3", own, turn="third")) or "")
