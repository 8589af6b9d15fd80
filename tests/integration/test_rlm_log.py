"""The RLM reference implementation's trajectory logs: `fleet import rlm-log` reads hand-made
logs covering each field into read-only sessions with the same tree, refuses bad ones with the
line and what was expected (storing nothing), and `fleet export --format rlm-log` writes our
turns back in that format."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from test_server_support import API, app_client, settings_for
from typer.testing import CliRunner

from fleet_rlm import RecursiveRLM, rlm_log
from fleet_rlm.cli import app as cli_app
from fleet_rlm.events import parse_event
from fleet_rlm.rlm_log_writer import NothingToWrite, write
from fleet_rlm.sessions import LOCAL, ReadOnly, SessionService
from fleet_rlm.testing import ask_then_delegate_rules, two_level_rlm_rules
from fleet_rlm.tree import fold

LOGS = Path(__file__).parent.parent / "data" / "rlm_logs"


def fleet(data_dir: Path, *args: str):
    return CliRunner().invoke(cli_app, list(args), env={"FLEET_DATA_DIR": str(data_dir)})


async def _service(data_dir: Path, server=None) -> SessionService:
    svc = SessionService(settings_for(server, data_dir))
    await svc.open()
    return svc


async def test_a_log_with_every_field_imports_as_a_read_only_session(tmp_path):
    result = await asyncio.to_thread(fleet, tmp_path, "import", "rlm-log",
                                     str(LOGS / "every_field.jsonl"))
    assert result.exit_code == 0, result.output
    assert "imported 2 run(s)" in result.output
    svc = await _service(tmp_path)
    try:
        (session,) = await svc.list_sessions(LOCAL)
        assert session.imported_from == "every_field.jsonl"
        assert session.title == "every_field.jsonl (gpt-4o)"
        first, second = await svc.turns(LOCAL, session.id)
        assert (first.user_message, first.answer, first.status) == (
            "What is the secret number?", "42", "ok")  # root_prompt; final_answer [var, value]
        assert (second.user_message, second.answer) == ('{"doc": "teal"}', "teal")
        assert first.usage["calls"] == 6 and first.usage["prompt_tokens"] == 17 + 5
        assert first.usage["completion_tokens"] == 1 + 2

        events = await svc.turn_events(LOCAL, first.id)
        tree = fold(parse_event(e) for e in events)
        (node,) = [n for n in tree.nodes.values() if n.kind == "rlm"]
        assert (node.model, node.sub_model, node.max_iterations) == (
            "gpt-4o", "gpt-4o-mini", 30)
        assert node.inputs["context"].chars == len("The secret number is 42. The colour is teal.")
        assert [c.iteration for c in node.cells] == [1, 2, 3]
        one, two, three = node.cells
        assert one.code == ("print(context[:20])\nans = llm_query('find the number in: ' + "
                            "context)\nprint(ans)\n\nprint(1/0)")
        assert one.reasoning == "Let me look."
        assert one.output.stdout == "The secret number is\n42\n"
        assert one.output.stderr == "ZeroDivisionError: division by zero\n"
        assert one.output.duration_s == pytest.approx(0.8)
        ok, limited = one.sub_calls
        assert (ok.model, ok.prompt_tokens, ok.completion_tokens, ok.latency_s) == (
            "gpt-4o-mini", 17, 1, 0.5)
        assert limited.error == "RateLimitError: rate limited" and limited.http_status == 429
        (old_style,) = two.sub_calls  # an older logger's usage fields, no root_model
        assert (old_style.model, old_style.prompt_tokens, old_style.completion_tokens) == (
            "gpt-4o-mini", 5, 2)
        assert (three.code, three.output) == ("", None)
        assert node.finished.answer == {"answer": "42"}

        root_call = one.calls[0]
        detail = await svc.call(LOCAL, first.id, root_call.call_id)
        assert detail.captured and [m.role for m in detail.messages] == [
            "system", "assistant", "user"]
        assert detail.reply.startswith("Let me look.") and detail.params == {
            "model_name": "gpt-4o"}
        sub = await svc.call(LOCAL, first.id, limited.call_id)
        assert [m.content for m in sub.messages] == ["and the colour?"]
        assert sub.error == "RateLimitError: rate limited"

        with pytest.raises(ReadOnly, match="read-only"):
            await svc.post(LOCAL, session.id, "one more question")
        with pytest.raises(ReadOnly):
            await svc.add_document(session.id, "x.txt", b"hello", principal=LOCAL)
    finally:
        await svc.close()


async def test_a_log_without_a_final_answer_imports_as_an_error(tmp_path):
    result = await asyncio.to_thread(fleet, tmp_path, "import", "rlm-log",
                                     str(LOGS / "no_answer.jsonl"), "--title", "t")
    assert result.exit_code == 0, result.output
    svc = await _service(tmp_path)
    try:
        (session,) = await svc.list_sessions(LOCAL)
        (turn,) = await svc.turns(LOCAL, session.id)
        assert (session.title, turn.status, turn.answer) == ("t", "error", None)
        assert "without a final answer" in turn.error
        events = await svc.turn_events(LOCAL, turn.id)
        assert [e["type"] for e in events][-3:] == ["error", "rlm_finished", "turn_finished"]
    finally:
        await svc.close()


META = ('{"type": "metadata", "root_model": "m", "max_depth": 1, "max_iterations": 3, '
        '"backend": "openai", "backend_kwargs": {}, "environment_type": "local", '
        '"environment_kwargs": {}, "other_backends": null}')
ITERATION = ('{"type": "iteration", "iteration": 1, "prompt": [{"role": "user", "content": "q"}],'
             ' "response": "FINAL(a)", "code_blocks": [], "final_answer": "a", '
             '"iteration_time": 0.1}')


@pytest.mark.parametrize("lines, line, expected", [
    ([], 1, "expected the metadata line"),
    ([ITERATION], 1, "expected the metadata line"),
    ([META, "{not json"], 2, "expected a JSON object; not JSON"),
    ([META, "[1, 2]"], 2, "expected a JSON object; found list"),
    ([META.replace('"root_model": "m", ', '')], 1, "root_model: Field required"),
    ([META.replace('{"type": "metadata", ', '{"type": "metadata", "version": 2, '), ITERATION],
     1, "version 2, a version this reader does not know"),
    ([META, ITERATION.replace('"code_blocks": [], ', '')], 2, "code_blocks: Field required"),
    ([META, ITERATION.replace('"code_blocks": []', '"code_blocks": [{"code": "x", "result": '
                              '{"stdout": 3, "stderr": ""}}]')], 2,
     "code_blocks.0.result.stdout: Input should be a valid string"),
    ([META, ITERATION, '{"type": "trace", "x": 1}'], 3, "found type 'trace'"),
    ([META, META, ITERATION], 2, "the metadata line comes once, first"),
    ([META], 2, "at least one iteration line"),
    ([META, ITERATION, '{"type": "run_context", "prompt": "p"}'], 4,
     "an iteration line after each run_context line"),
])
def test_a_bad_log_is_refused_with_its_line_and_nothing_is_stored(tmp_path, lines, line,
                                                                     expected):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    result = fleet(tmp_path / "data", "import", "rlm-log", str(path))
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert f"line {line}: expected" in message and expected in message, message
    assert "nothing was imported" in message
    with pytest.raises(rlm_log.RlmLogError) as caught:
        rlm_log.parse(lines)
    assert caught.value.line == line
    assert not (tmp_path / "data" / "calls").exists()


SUB = ('{"code": "x", "result": {"stdout": "", "stderr": "", "rlm_calls": [{"prompt": "p", '
       '"response": "r", "prompt_tokens": TOKENS}]}}')


@pytest.mark.parametrize("iteration, expected", [
    (ITERATION.replace('"iteration_time": 0.1', '"iteration_time": Infinity'),
     "Infinity is not a number JSON allows"),
    (ITERATION.replace('"iteration_time": 0.1', '"iteration_time": NaN'),
     "NaN is not a number JSON allows"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (ITERATION.replace('"iteration_time": 0.1', '"iteration_time": 1e300'),
     "iteration_time: Input should be less than or equal to"),
    (ITERATION.replace('"code_blocks": []', '"code_blocks": [' + SUB.replace("TOKENS", "-10")
                       + ']'), "Input should be greater than or equal to 0"),
    (ITERATION.replace('"iteration": 1,', '"iteration": 1, "timestamp": '
                       '"9999-12-31T23:59:59-23:59",'), "times and counts in range"),
])
def test_numbers_and_nesting_out_of_range_are_refused_by_line(tmp_path, iteration, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{META}\n{iteration}\n")
    result = fleet(tmp_path / "data", "import", "rlm-log", str(path))
    message = " ".join(result.output.split())
    assert result.exit_code == 1, message
    assert "line 2: expected" in message and expected in message, message
    assert "nothing was imported" in message


def test_text_that_is_not_unicode_imports_without_its_call_kept(tmp_path):
    path = tmp_path / "surrogate.jsonl"
    path.write_text(f"{META}\n" + ITERATION.replace('"FINAL(a)"', '"FINAL(a) \\ud800"') + "\n")
    with app_client(settings_for(None, tmp_path / "data")) as client:
        response = client.post(f"{API}/imports/rlm-log",
                               files={"file": ("surrogate.jsonl", path.read_bytes())})
        assert response.status_code == 201, response.text


def test_a_line_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(META.encode() + b"\n" + ITERATION.encode().replace(b"FINAL", b"\xff") + b"\n")
    result = fleet(tmp_path / "data", "import", "rlm-log", str(path))
    assert result.exit_code == 1 and "line 2: expected UTF-8 text" in result.output


async def test_a_turn_exports_as_a_log_that_imports_back_with_the_same_tree(scripted_lm,
                                                                          tmp_path):
    server = scripted_lm([*two_level_rlm_rules(),
                          *ask_then_delegate_rules("Condense it.", "A summary.")])
    svc = SessionService(settings_for(server, tmp_path, delegate_chars=10))
    await svc.open()
    try:
        session = await svc.create_session(principal=LOCAL)
        await svc.add_document(session.id, "big.txt", b"x" * 30, principal=LOCAL)
        first = await svc.post(LOCAL, session.id, "condense big.txt")
        assert (await first.done).status == "waiting"
        again = await svc.post(LOCAL, session.id, "big.txt", answering=True)
        assert (await again.done).status == "ok"
        turn_id = again.turn_id
    finally:
        await svc.close()

    result = await asyncio.to_thread(fleet, tmp_path, "export", turn_id, "--format", "rlm-log")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    meta, *iterations = lines
    assert meta["type"] == "metadata" and meta["root_model"] == "openai/root"
    assert meta["other_backends"] == ["openai/sub"] and meta["max_depth"] == 2
    assert [i["iteration"] for i in iterations] == [1, 2]
    first_iteration = iterations[0]
    assert first_iteration["prompt"][0]["role"] == "system"  # the whole request, kept
    assert "rlm_query_batched" in first_iteration["code_blocks"][0]["code"]
    children = first_iteration["code_blocks"][0]["result"]["rlm_calls"]
    assert [c["prompt"] for c in children] == ["summarise"] * 3
    assert {c["response"] for c in children} == {"chunk-summary"}
    assert iterations[-1]["final_answer"] == "chunk-summary | chunk-summary | chunk-summary"

    metadata, (run,) = rlm_log.read(result.stdout.splitlines())
    back = fold(run.events)
    (node,) = [n for n in back.nodes.values() if n.kind == "rlm"]
    assert [c.code for c in node.cells] == [c["code_blocks"][0]["code"] if c["code_blocks"]
                                            else "" for c in iterations]
    assert run.answer == "chunk-summary | chunk-summary | chunk-summary"
    assert len(node.cells[0].sub_calls) == 3  # the children, as the log's rlm_calls


def test_a_run_writes_its_children_and_sub_calls_as_rlm_calls(scripted_lm):
    server = scripted_lm(two_level_rlm_rules())
    from fleet_rlm.config import Settings

    settings = Settings(root_model="openai/root", sub_model="openai/sub",
                        api_base=server.api_base)
    out = RecursiveRLM(settings=settings, max_iterations=3)(context="x" * 30, question="q")
    text = write(out.events, lambda _: None)
    _, (run,) = rlm_log.read(text.splitlines())
    assert run.answer == out.answer and run.status == "ok"
    with pytest.raises(NothingToWrite):
        write([e for e in out.events if e.type == "turn_started"], lambda _: None)


def test_the_api_imports_a_log_and_the_session_refuses_messages(tmp_path):
    from test_server_support import ws_url

    with app_client(settings_for(None, tmp_path)) as client:
        sent = client.post(f"{API}/imports/rlm-log", data={"title": "Reference run"},
                           files={"file": ("run.jsonl", (LOGS / "every_field.jsonl").read_bytes())})
        assert sent.status_code == 201, sent.text
        session = sent.json()
        assert (session["title"], session["read_only"], session["imported_from"]) == (
            "Reference run", True, "run.jsonl")
        turns = client.get(f"{API}/sessions/{session['id']}/turns").json()
        assert [t["answer"] for t in turns] == ["42", "teal"]
        events = client.get(f"{API}/turns/{turns[0]['id']}/events").json()["events"]
        call_id = next(e["call_id"] for e in events if e["type"] == "lm_call")
        call = client.get(f"{API}/turns/{turns[0]['id']}/calls/{call_id}").json()
        assert call["captured"] and call["messages"][0]["content"] == "You are an RLM with a REPL."
        with client.websocket_connect(ws_url(session["id"])) as ws:
            assert ws.receive_json()["type"] == "session"
            ws.send_json({"type": "message", "text": "more?"})
            refused = ws.receive_json()
        assert refused["type"] == "socket_error" and refused["code"] == "read_only"
        upload = client.post(f"{API}/sessions/{session['id']}/documents",
                             files={"file": ("a.txt", b"hello")})
        assert upload.status_code == 409 and upload.json()["error"] == "read_only"
        files = f"{API}/sessions/{session['id']}/workspace/file"
        for refused_too in (client.put(files, params={"path": "a.txt"}, content=b"x"),
                            client.delete(files, params={"path": "a.txt"}),
                            client.patch(f"{API}/sessions/{session['id']}",
                                         json={"root_model": "openai/other"})):
            assert refused_too.status_code == 409, refused_too.text
            assert refused_too.json()["error"] == "read_only"
        renamed = client.patch(f"{API}/sessions/{session['id']}", json={"title": "kept"})
        assert renamed.status_code == 200  # its name is the reader's to choose

        bad = client.post(f"{API}/imports/rlm-log",
                          files={"file": ("bad.jsonl", (META + "\n{oops\n").encode())})
        assert bad.status_code == 422
        assert (bad.json()["error"], bad.json()["line"]) == ("invalid_log", 2)
        assert len(client.get(f"{API}/sessions").json()["items"]) == 1


def test_the_api_exports_a_turn_in_each_format(scripted_lm, tmp_path):
    from test_server_support import API, app_client, quick, until_finished, ws_url

    server = scripted_lm(quick("hello", "hi"))
    with app_client(settings_for(server, tmp_path)) as client:
        imported = client.post(f"{API}/imports/rlm-log", files={
            "file": ("run.jsonl", (LOGS / "every_field.jsonl").read_bytes())}).json()
        turn_id = client.get(f"{API}/sessions/{imported['id']}/turns").json()[0]["id"]
        log = client.get(f"{API}/turns/{turn_id}/export", params={"format": "rlm-log"})
        assert log.status_code == 200 and log.headers["content-type"] == "application/x-ndjson"
        assert f'turn-{turn_id}.jsonl' in log.headers["content-disposition"]
        lines = [json.loads(line) for line in log.text.splitlines()]
        original = [json.loads(line) for line in
                    (LOGS / "every_field.jsonl").read_text().splitlines()[2:5]]
        assert [i["prompt"] for i in lines[1:]] == [i["prompt"] for i in original]
        assert [i["response"] for i in lines[1:]] == [i["response"] for i in original]
        assert lines[-1]["final_answer"] == "42"
        markdown = client.get(f"{API}/turns/{turn_id}/export", params={"format": "markdown"})
        assert markdown.headers["content-type"].startswith("text/markdown")
        as_json = client.get(f"{API}/turns/{turn_id}/export").json()
        assert as_json["turn"]["id"] == turn_id

        session_id = client.post(f"{API}/sessions", json={"title": "plain"}).json()["id"]
        with client.websocket_connect(ws_url(session_id)) as ws:
            assert ws.receive_json()["type"] == "session"
            ws.send_json({"type": "message", "text": "hello"})
            agent_only = until_finished(ws.receive_json)[-1]["turn_id"]
        refused = client.get(f"{API}/turns/{agent_only}/export", params={"format": "rlm-log"})
        assert refused.status_code == 422 and "ran no RLM node" in refused.json()["message"]
        assert client.get(f"{API}/turns/nope/export").status_code == 404
