"""The session service end to end: turns in worker threads, recorded in the store and streamed
live, ask_user across a restart, crash recovery, history, cancel, documents, saved variables and
memory — every model call answered by the scripted server."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.documents import DocumentError
from fleet_rlm.events import parse_event
from fleet_rlm.sessions import Busy, LiveTurn, SessionService
from fleet_rlm.testing import AGENT_ANSWER, dspy_reply, make_pdf
from fleet_rlm.testing import dspy_agent_step as step

RLM_ACTION = "variables_info"  # only the recursive engine's action prompt has this field



def message(text: str) -> str:
    """A regex matching the agent's prompts for the user message `text`."""
    return rf"\[\[ ## message ## \]\]\n{text}\n"


def answer(text: str) -> str:
    return dspy_reply(reasoning="from the trajectory", answer=text)


def settings_for(server, data_dir: Path, **overrides: object) -> Settings:
    return Settings(root_model="openai/root", sub_model="openai/sub", api_base=server.api_base,
                    data_dir=data_dir, **overrides)




async def finish(svc: SessionService, live: LiveTurn, after_seq: int = 0) -> tuple[list, object]:
    """The turn's events after `after_seq` as a subscriber sees them, and its result."""
    events = [e async for e in svc.events(live.turn_id, after_seq)]
    return events, await asyncio.wait_for(live.done, 30)


async def stored(svc: SessionService, turn_id: str) -> list:
    return [parse_event(r.payload) for r in await svc.store.events.list(turn_id)]


# -- delegation and the event record -----------------------------------------------------------


async def test_long_document_goes_to_the_recursive_engine_short_one_is_read_directly(
        scripted_lm, tmp_path, open_service):
    big, small = "hay needle " * 500, "The meeting is on Tuesday at 10:00 in room 4."
    server = scripted_lm([
        {"model": "root", "match": RLM_ACTION,
         "reply": dspy_reply(reasoning="count in code",
                             code="SUBMIT(answer=str(context.count('needle')))")},
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("500 needles; Tuesday 10:00.")},
        {"model": "root", "match": "observation_2", "times": 1, "reply": step("done", "finish")},
        {"model": "root", "match": "observation_1", "times": 1,
         "reply": step("short: read it", "read_document", name="small.txt")},
        {"model": "root", "match": "observation_0", "times": 1,
         "reply": step("long: delegate", "rlm_query", question="How many needles?",
                       documents=["big.txt"])},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": step("see what there is", "list_documents")},
    ])
    svc = await open_service(settings_for(server, tmp_path, delegate_chars=1000))
    session = await svc.create_session("delegation")
    await svc.add_document(session.id, "big.txt", big.encode())
    await svc.add_document(session.id, "small.txt", small.encode())

    live = await svc.send(session.id, "How many needles, and when is the meeting?")
    streamed, result = await finish(svc, live)

    assert result.status == "ok", result.error
    assert result.answer == "500 needles; Tuesday 10:00."
    server.verify()
    steps = [e for e in streamed if e.type == "agent_step"]
    assert [e.tool_name for e in steps] == [
        "list_documents", "rlm_query", "read_document", "finish"]
    outputs = {e.tool_name: e.output for e in streamed if e.type == "tool_result"}
    assert "big.txt (text, 5500 chars)" in outputs["list_documents"]
    assert outputs["rlm_query"] == "500"
    assert small in outputs["read_document"]

    agent = steps[0]
    assert agent.depth == 0 and agent.parent_id is None
    assert {e.node_id for e in steps} == {agent.node_id}
    (started,) = [e for e in streamed if e.type == "rlm_started"]
    assert (started.depth, started.parent_id) == (1, agent.node_id)
    assert started.inputs["context"].chars == len(big)
    subtree = [e for e in streamed if e.node_id == started.node_id]
    assert [e.type for e in subtree][-1] == "rlm_finished"
    # The subtree sits between the delegating step and its result.
    kinds = [(e.type, getattr(e, "tool_name", None)) for e in streamed]
    assert (kinds.index(("agent_step", "rlm_query")) < streamed.index(started)
            < kinds.index(("tool_result", "rlm_query")))

    # What a live subscriber saw is exactly what the store holds, in the same order.
    assert [e.seq for e in streamed] == list(range(1, len(streamed) + 1))
    assert (streamed[0].type, streamed[-1].type) == ("turn_started", "turn_finished")
    assert await stored(svc, live.turn_id) == streamed
    turn = await svc.store.turns.get(live.turn_id)
    assert (turn.status, turn.answer) == ("ok", "500 needles; Tuesday 10:00.")
    assert turn.usage["calls"] == 6


# -- ask_user ----------------------------------------------------------------------------------


def ask_user_script() -> list[dict]:
    """list_documents, then ask_user; after the reply, the prompt must carry the whole earlier
    trajectory and the reply for the agent to go on."""
    resumed = (r"thought_0 ## \]\]\nlook around.*tool_name_0 ## \]\]\nlist_documents"
               r".*observation_0 ## \]\]\nnotes\.txt \(text, 11 chars\)"
               r".*tool_name_1 ## \]\]\nask_user"
               r".*observation_1 ## \]\]\nThe user replied: the Q3 one")
    return [
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("Q3 it is.")},
        {"model": "root", "match": resumed, "times": 1, "reply": step("got it", "finish")},
        {"model": "root", "match": "observation_0", "times": 1,
         "reply": step("ambiguous", "ask_user", question="Which report?")},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": step("look around", "list_documents")},
    ]


async def waiting_turn(svc: SessionService) -> tuple[object, LiveTurn, list, object]:
    """A session holding notes.txt whose first turn, played by ask_user_script, asks "Which
    report?" and waits: the session, the turn, its events so far and its result."""
    session = await svc.create_session()
    await svc.add_document(session.id, "notes.txt", b"hello world")
    live = await svc.send(session.id, "Summarise the report")
    first, result = await finish(svc, live)
    return session, live, first, result


async def test_ask_user_pauses_the_turn_and_a_reply_resumes_it(scripted_lm, tmp_path,
                                                               open_service):
    server = scripted_lm(ask_user_script())
    svc = await open_service(settings_for(server, tmp_path))
    session, live, first, result = await waiting_turn(svc)
    assert (result.status, result.question) == ("waiting", "Which report?")
    turn = await svc.store.turns.get(live.turn_id)
    assert turn.status == "waiting"
    assert turn.pending["question"] == "Which report?"
    assert [e.type for e in first][-2:] == ["ask_user", "turn_finished"]
    with pytest.raises(Busy):  # a turn waiting on the user still holds the session
        await svc.send(session.id, "something else")

    # A reply sent twice (two tabs, a double click) resumes the turn once.
    replies = await asyncio.gather(*(svc.reply(live.turn_id, "the Q3 one") for _ in range(5)),
                                   return_exceptions=True)
    (resumed,) = [r for r in replies if isinstance(r, LiveTurn)]
    assert all(isinstance(r, ValueError | Busy) for r in replies if r is not resumed)
    rest, result = await finish(svc, resumed, after_seq=first[-1].seq)
    assert (result.status, result.answer) == ("ok", "Q3 it is.")
    server.verify()
    assert (rest[0].type, rest[0].tool_name, rest[0].output) == (
        "tool_result", "ask_user", "the Q3 one")
    assert [e.seq for e in first + rest] == list(range(1, len(first) + len(rest) + 1))
    assert await stored(svc, live.turn_id) == first + rest
    turn = await svc.store.turns.get(live.turn_id)
    assert (turn.status, turn.answer, turn.pending) == ("ok", "Q3 it is.", None)


async def test_a_waiting_turn_resumes_in_a_new_process_where_it_paused(scripted_lm, tmp_path,
                                                                       open_service):
    server = scripted_lm(ask_user_script())
    settings = settings_for(server, tmp_path)
    svc = await open_service(settings)
    session, live, _, result = await waiting_turn(svc)
    assert result.status == "waiting"
    before = await stored(svc, live.turn_id)
    await svc.close()

    svc = await open_service(settings)  # a fresh process: nothing of the turn in memory
    assert (await svc.store.turns.get(live.turn_id)).status == "waiting"
    resumed = await svc.reply(live.turn_id, "the Q3 one")
    _, result = await finish(svc, resumed)

    assert (result.status, result.answer) == ("ok", "Q3 it is.")
    server.verify()  # the resumed prompt matched: the trajectory before the question came back
    events = await stored(svc, live.turn_id)
    assert events[: len(before)] == before
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events].count("turn_started") == 1
    after = events[len(before):]
    assert (after[0].type, after[0].tool_name, after[0].output) == (
        "tool_result", "ask_user", "the Q3 one")
    assert after[-1].type == "turn_finished" and after[-1].status == "ok"
    turn = await svc.store.turns.get(live.turn_id)
    assert (turn.status, turn.answer) == ("ok", "Q3 it is.")
    # The turn's bill covers both sides of the pause: every call the server received.
    assert turn.usage["calls"] == server.stats()["calls"]


async def test_a_turn_left_running_by_a_crash_is_interrupted_on_the_next_start(tmp_path,
                                                                              open_service):
    settings = Settings(data_dir=tmp_path)
    svc = await open_service(settings)
    session = await svc.create_session()
    crashed = await svc.store.turns.start(session.id, "never finished")
    waiting = await svc.store.turns.start((await svc.create_session()).id, "asked back")
    await svc.store.turns.set_pending(waiting.id, {"question": "Which one?"})
    await svc.close()

    svc = await open_service(settings)
    turn = await svc.store.turns.get(crashed.id)
    assert turn.status == "interrupted" and turn.finished_at is not None
    *_, error, finished = [parse_event(e.payload) for e in await svc.store.events.list(crashed.id)]
    assert (error.type, error.error_type) == ("error", "Interrupted")
    assert (finished.type, finished.status) == ("turn_finished", turn.status)
    assert (await svc.store.turns.get(waiting.id)).status == "waiting"
    assert await svc.store.turns.running_for_session(session.id) is None  # not Busy any more


# -- history -----------------------------------------------------------------------------------


async def test_older_turns_are_summarised_once_and_stay_whole_in_the_store(scripted_lm, tmp_path,
                                                                          open_service):
    long_answer = "APPLES " + "the orchard has apples " * 8  # ~50 tokens per exchange
    third = (r"(?s)^(?!.*APPLES)"  # the first answer itself is gone from the prompt
             r".*Summary of earlier conversation: SUMMARY-7F3: the user asked about apples"
             r".*User: second\nAssistant: PEARS")
    server = scripted_lm([
        {"model": "sub", "match": r"Summarise this conversation.*User: first\nAssistant: APPLES",
         "times": 1, "reply": "SUMMARY-7F3: the user asked about apples."},
        {"model": "root", "match": message("first") + ".*" + AGENT_ANSWER,
         "reply": answer(long_answer)},
        {"model": "root", "match": message("second") + ".*" + AGENT_ANSWER,
         "reply": answer("PEARS " + "the orchard has pears " * 8)},
        {"model": "root", "match": third + ".*" + AGENT_ANSWER, "reply": answer("done")},
        {"model": "root", "match": "(?s)^(?!.*SUMMARY-7F3).*" + message("(first|second)")
         + ".*next_thought", "times": 2, "reply": step("nothing to look up", "finish")},
        {"model": "root", "match": third + ".*next_thought", "times": 1,
         "reply": step("nothing to look up", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path, history_max_tokens=60))
    session = await svc.create_session()
    results, events = [], []
    for text in ("first", "second", "third"):
        streamed, result = await finish(svc, await svc.send(session.id, text))
        results.append(result)
        events.append(streamed)

    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.error for r in results]
    server.verify()
    summaries = [[e for e in turn if e.type == "lm_call" and e.role == "summary"]
                 for turn in events]
    assert [len(s) for s in summaries] == [0, 0, 1]
    assert summaries[2][0].model.endswith("sub")
    assert results[2].summary == "SUMMARY-7F3: the user asked about apples."
    turns = await svc.store.turns.list(session.id)
    assert [(t.user_message, t.answer) for t in turns] == [
        ("first", long_answer.strip()), ("second", results[1].answer), ("third", "done")]


# -- streaming, Busy, concurrency, cancel ------------------------------------------------------


async def test_answer_deltas_concatenate_to_the_final_answer(scripted_lm, tmp_path, open_service):
    text = "Revenue rose 12% in Q3.\n\nDrivers:\n- exports  (+8%)\n- `services` [see p. 4]"
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": answer(text)},
        {"model": "root", "match": "next_thought", "reply": step("known", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    session = await svc.create_session()
    streamed, result = await finish(svc, await svc.send(session.id, "How did revenue do?"))

    deltas = [e.text for e in streamed if e.type == "answer_delta"]
    assert len(deltas) > 5  # streamed piece by piece, not handed over at the end
    assert "".join(deltas) == result.answer == text
    assert streamed[-1].answer == text


async def test_one_turn_at_a_time_per_session_while_sessions_run_side_by_side(
        scripted_lm, tmp_path, open_service):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("fine")},
        {"model": "root", "match": "next_thought", "delay_ms": 700,
         "reply": step("slow model", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    a, b, c = [await svc.create_session(title) for title in "abc"]

    first = await svc.send(a.id, "alpha")
    with pytest.raises(Busy):
        await svc.send(a.id, "alpha again")
    second = await svc.send(b.id, "beta")
    # Messages sent at the same moment to one session: one turn starts, the others are refused.
    burst = await asyncio.gather(*(svc.send(c.id, f"gamma {i}") for i in range(3)),
                                 return_exceptions=True)
    (third,) = [r for r in burst if isinstance(r, LiveTurn)]
    assert [type(r) for r in burst if not isinstance(r, LiveTurn)] == [Busy, Busy]
    (ev_a, res_a), (ev_b, res_b), (_, res_c) = await asyncio.gather(
        finish(svc, first), finish(svc, second), finish(svc, third))

    assert res_a.status == res_b.status == res_c.status == "ok"
    assert len(await svc.store.turns.list(c.id)) == 1
    # Each started before the other finished: they overlapped.
    assert ev_a[0].ts < ev_b[-1].ts and ev_b[0].ts < ev_a[-1].ts
    assert len(await svc.store.turns.list(a.id)) == 1  # the refused message left no turn
    _, again = await finish(svc, await svc.send(a.id, "alpha again"))
    assert again.status == "ok"


async def test_cancel_stops_a_running_turn_quickly_and_keeps_what_it_did(
        scripted_lm, tmp_path, open_service):
    server = scripted_lm([
        {"model": "root", "match": "observation_0", "delay_ms": 5000,
         "reply": step("too late", "finish")},
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": step("look first", "list_documents")},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    session = await svc.create_session()
    live = await svc.send(session.id, "anything")
    seen = []
    async for event in svc.events(live.turn_id):
        seen.append(event)
        if event.type == "tool_result":  # the second model call is now in flight
            await asyncio.sleep(0.2)
            t0 = time.monotonic()
            assert svc.cancel(live.turn_id)
    result = await asyncio.wait_for(live.done, 2)
    elapsed = time.monotonic() - t0

    assert elapsed < 2
    assert result.status == "cancelled"
    turn = await svc.store.turns.get(live.turn_id)
    assert turn.status == "cancelled" and turn.answer is None
    events = await stored(svc, live.turn_id)
    assert events == seen
    assert [e.type for e in events] == [
        "turn_started", "lm_call", "agent_step", "tool_result", "lm_call", "cancelled",
        "turn_finished"]
    assert events[-1].status == "cancelled"
    assert events[4].usage_estimated  # the call walked away from, on record
    assert events[-1].usage.calls == 2
    assert not svc.cancel(live.turn_id)  # nothing left to cancel
    assert svc.live == {}


async def test_cancel_interrupts_the_python_tool_and_the_session_keeps_its_sandbox(
        scripted_lm, tmp_path, open_service):
    server = scripted_lm([
        {"model": "root", "match": "next_thought", "times": 1,
         "reply": step("slow code", "python",
                       code="x = 1\nimport time\ntime.sleep(30)\nx = 2")},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    session = await svc.create_session()
    live = await svc.send(session.id, "anything")
    async for event in svc.events(live.turn_id):
        if event.type == "agent_step":  # the code starts running now
            await asyncio.sleep(0.5)
            t0 = time.monotonic()
            svc.cancel(live.turn_id)
    result = await asyncio.wait_for(live.done, 5)

    assert time.monotonic() - t0 < 2
    assert result.status == "cancelled"
    assert (await svc.store.turns.get(live.turn_id)).status == "cancelled"
    # The code stopped where it was; the sandbox and its variables are still there.
    assert svc.session_sandbox(session.id).execute("print(x)", timeout=10).stdout == "1\n"


# -- documents ---------------------------------------------------------------------------------


GOOD_DOCUMENTS = {
    "notes.txt": (b"plain notes\r\nline two\n", "text", ["plain notes\nline two"]),
    "readme.md": (b"# Title\n\nSome *markdown*.\n", "markdown", ["# Title", "*markdown*"]),
    "data.json": (b'{"city": "Oslo", "pop": 709000}', "json", ["Oslo", "709000"]),
    "table.csv": (b"name,score\nada,97\nbob,88\n", "csv", ["ada", "97", "bob"]),
    "page.html": (b"<html><body><h1>Hi</h1><p>Body <b>text</b></p><script>x()</script>"
                  b"</body></html>", "html", ["Hi", "Body text"]),
    "paper.pdf": (make_pdf(["Page one words", "Page two words"]), "pdf",
                  ["Page one words", "Page two words"]),
}


async def test_each_document_format_is_stored_as_text(tmp_path, open_service):
    svc = await open_service(Settings(data_dir=tmp_path))
    session = await svc.create_session()
    for name, (data, kind, expected) in GOOD_DOCUMENTS.items():
        doc = await svc.add_document(session.id, name, data)
        text = await svc.store.documents.read(doc.id)
        assert (doc.name, doc.kind, doc.chars) == (name, kind, len(text))
        for piece in expected:
            assert piece in text, (name, text)
        if kind == "html":
            assert "<" not in text and "x()" not in text
    assert [d.name for d in await svc.store.documents.list(session.id)] == list(GOOD_DOCUMENTS)


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("image.txt", b"\x89PNG\r\n\x1a\n" + bytes(200), "binary"),
    ("big.txt", b"a" * (1024 * 1024 + 1), "too_large"),
    ("broken.txt", "✓ café crème".encode() + b", d\xe9j\xe0 vu", "bad_encoding"),  # UTF-8, cut
])
async def test_a_bad_document_is_refused_and_nothing_is_stored(tmp_path, open_service, name,
                                                               data, reason):
    svc = await open_service(Settings(data_dir=tmp_path, max_document_mb=1))
    session = await svc.create_session()
    with pytest.raises(DocumentError) as info:
        await svc.add_document(session.id, name, data)
    assert info.value.reason == reason
    assert await svc.store.documents.list(session.id) == []
    assert svc.store.blobs.shas() == set()


async def test_the_same_content_under_two_names_is_stored_once(tmp_path, open_service):
    svc = await open_service(Settings(data_dir=tmp_path))
    session = await svc.create_session()
    data = b"the same words in both files\n"
    one = await svc.add_document(session.id, "one.txt", data)
    two = await svc.add_document(session.id, "two.txt", data)
    assert one.id != two.id and one.sha256 == two.sha256
    assert len(svc.store.blobs.shas()) == 1
    await svc.store.documents.delete(one.id)
    assert await svc.store.documents.read(two.id) == data.decode()  # the shared blob stays


async def test_the_same_bytes_read_as_two_formats_keep_their_own_text(tmp_path, open_service):
    svc = await open_service(Settings(data_dir=tmp_path))
    session = await svc.create_session()
    data = b"<p>Hello <b>there</b></p>\n"
    html = await svc.add_document(session.id, "page.html", data)
    raw = await svc.add_document(session.id, "page.txt", data)
    assert "<b>" not in await svc.store.documents.read(html.id)
    assert await svc.store.documents.read(raw.id) == data.decode()


# -- the session's python sandbox and memory ---------------------------------------------------


async def test_python_variables_survive_a_restart_and_unpicklable_ones_are_listed(
        scripted_lm, tmp_path, open_service):
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("ok")},
        {"model": "root", "match": "observation_0", "reply": step("done", "finish")},
        {"model": "root", "match": message("set") + ".*next_thought", "times": 1,
         "reply": step("store", "python", code="x = 42\nsquare = lambda v: v * v\nprint(x)")},
        {"model": "root", "match": message("get") + ".*next_thought", "times": 1,
         "reply": step("read back", "python",
                       code="print(x)\nprint('square' in globals())")},
    ])
    settings = settings_for(server, tmp_path)
    svc = await open_service(settings)
    session = await svc.create_session()
    first, _ = await finish(svc, await svc.send(session.id, "set"))
    assert [e.output for e in first if e.type == "tool_result"][0] == "42\n"
    await svc.close()

    svc = await open_service(settings)
    assert svc.lost_variables(session.id) == ["square"]
    events, result = await finish(svc, await svc.send(session.id, "get"))
    assert result.status == "ok"
    server.verify()
    assert [e.output for e in events if e.type == "tool_result"][0] == "42\nFalse\n"


async def test_deleting_a_session_deletes_its_sandbox_and_workspace(tmp_path, open_service):
    svc = await open_service(Settings(data_dir=tmp_path))
    kept, deleted = (await svc.create_session()).id, (await svc.create_session()).id
    for session_id in (kept, deleted):
        box = await asyncio.to_thread(svc.session_sandbox, session_id)
        result = await asyncio.to_thread(
            box.execute, "open('/work/artifacts/out.txt', 'w').write('x')")
        assert result.ok, result
    root = svc.workspace(deleted)
    assert (root / "artifacts" / "out.txt").exists()

    await svc.delete_session(deleted)
    assert not root.exists() and not box.alive
    assert (svc.workspace(kept) / "artifacts" / "out.txt").exists()
    chunks, size = svc.session_workspace(kept).open_file("artifacts/out.txt")
    assert (b"".join(chunks), size) == (b"x", 1)


async def test_memory_updates_persist_and_reach_the_next_prompt(scripted_lm, tmp_path,
                                                               open_service):
    fact = "Name: Ada. Prefers metric units."
    server = scripted_lm([
        {"model": "root", "match": AGENT_ANSWER, "reply": answer("noted")},
        {"model": "root", "match": "observation_0", "reply": step("done", "finish")},
        {"model": "root", "match": message("remember me") + ".*next_thought", "times": 1,
         "reply": step("a durable fact", "memory_update", label="human", value=fact)},
        {"model": "root", "match": rf"<human>\n{re.escape(fact)}\n</human>.*next_thought",
         "times": 1, "reply": step("I know them", "finish")},
    ])
    svc = await open_service(settings_for(server, tmp_path))
    session = await svc.create_session()
    events, _ = await finish(svc, await svc.send(session.id, "remember me"))
    assert [e.output for e in events if e.type == "tool_result"][0] == "Updated human."
    assert await svc.store.memory.get_all(session.id) == {"human": fact}

    _, result = await finish(svc, await svc.send(session.id, "who am I?"))
    assert result.status == "ok"
    server.verify()


def test_a_subscriber_that_falls_behind_resumes_from_its_last_read_event():
    from types import SimpleNamespace

    from fleet_rlm.sessions import LiveTurn, Overflow, SessionService

    queue: asyncio.Queue = asyncio.Queue(3)
    live = LiveTurn("t", "s", None, None, subscribers=[queue])  # type: ignore[arg-type]
    for seq in (1, 2):
        SessionService._deliver(live, SimpleNamespace(seq=seq, type="lm_call"))
    assert queue.get_nowait().seq == 1  # the consumer read seq 1, then stalled
    for seq in (3, 4, 5):
        SessionService._deliver(live, SimpleNamespace(seq=seq, type="lm_call"))
    (item,) = [queue.get_nowait() for _ in range(queue.qsize())]
    assert isinstance(item, Overflow) and item.last_seq == 1  # 2 onwards come from the store
    assert queue not in live.subscribers


async def test_dismissing_a_waiting_turn_closes_its_record(scripted_lm, tmp_path, open_service):
    server = scripted_lm(ask_user_script())
    svc = await open_service(settings_for(server, tmp_path))
    session, live, first, result = await waiting_turn(svc)
    assert result.status == "waiting"

    assert await svc.stop(live.turn_id) is True
    assert await svc.stop(live.turn_id) is False  # already over
    events = await stored(svc, live.turn_id)
    assert [e.seq for e in events] == list(range(1, len(first) + 3))
    assert [e.type for e in events[-2:]] == ["cancelled", "turn_finished"]
    assert events[-1].status == "cancelled" and events[-1].node_id == first[0].node_id
    turn = await svc.store.turns.get(live.turn_id)
    assert (turn.status, turn.pending) == ("cancelled", None)
    assert turn.usage["calls"] == server.stats()["calls"]
    await svc.send(session.id, "a new question")  # the session is free again
