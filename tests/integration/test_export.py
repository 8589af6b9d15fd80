"""Turn and session export, as JSON and as a Markdown transcript, from the library and from
`fleet export`, on a scripted agent turn that pauses on the user and delegates to a 2-level RLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_rlm.config import Settings
from fleet_rlm.sessions import SessionService
from fleet_rlm.sessions.exports import export_session, export_turn
from fleet_rlm.store import NotFound, Store
from fleet_rlm.testing import ask_then_delegate_rules, two_level_rlm_rules

pytestmark = pytest.mark.slow


# The agent asks which document, then delegates to an RLM that fans out to three children.
RULES = [*two_level_rlm_rules(),
         *ask_then_delegate_rules("Summarise the parts", "Three summaries, x=42.")]


@pytest.fixture
async def recorded(scripted_lm, tmp_path) -> tuple[Settings, str, str]:
    """A data dir holding one session whose one turn went through the whole script."""
    server = scripted_lm(RULES)
    settings = Settings(root_model="openai/root", sub_model="openai/sub",
                        api_base=server.api_base, data_dir=tmp_path / "data", delegate_chars=1000)
    service = SessionService(settings)
    await service.open()
    try:
        session = await service.create_session("Parts")
        await service.add_document(session.id, "parts.txt", ("part " * 400).encode())
        live = await service.send(session.id, "Summarise the document")
        assert (await live.done).status == "waiting"
        live = await service.reply(live.turn_id, "parts.txt")
        result = await live.done
        assert result.status == "ok", result.error
    finally:
        await service.close()
    server.verify()
    return settings, session.id, live.turn_id


async def test_a_turn_as_json_has_everything(recorded):
    settings, session_id, turn_id = recorded
    async with Store.from_settings(settings) as store:
        data = json.loads(await export_turn(store, turn_id, "json"))
        stored = [e.payload for e in await store.events.list(turn_id)]
    assert data["format"] == "fleet-rlm-turn"
    turn = data["turn"]
    assert turn["id"] == turn_id and turn["session_id"] == session_id and turn["index"] == 1
    assert turn["user_message"] == "Summarise the document"
    assert turn["answer"] == "Three summaries, x=42." and turn["status"] == "ok"
    assert turn["usage"]["calls"] > 0 and turn["finished_at"]
    assert turn["events"] == stored
    assert [e["seq"] for e in turn["events"]] == list(range(1, len(stored) + 1))
    types = [e["type"] for e in turn["events"]]
    assert types[0] == "turn_started" and types[-1] == "turn_finished"
    assert types.count("rlm_started") == 4 and "ask_user" in types


async def test_a_turn_as_markdown_reads_as_a_transcript(recorded):
    settings, _, turn_id = recorded
    async with Store.from_settings(settings) as store:
        text = await export_turn(store, turn_id, "markdown")
    assert text.startswith("# Turn 1 — ok\n")
    assert "## Question\n\n> Summarise the document\n" in text
    order = ["### Step 1: ask_user", "Asked the user: **Which document?**", "parts.txt",
             "### Step 2: rlm_query", "#### RLM `", "— depth 1", "##### Iteration 1",
             "split in three", "```python\nchunks = [context[i:i+10]", "*0 sub-model",
             "###### RLM `", "— depth 2", "###### Iteration 1 of RLM `", "(depth 2)",
             "```python\nSUBMIT(answer=llm_query('sum: ' + context))",
             "*1 sub-model call(s)*", "Finished: **ok** after 1 iteration(s).",
             "Output:\n\n```\n['chunk-summary', 'chunk-summary', 'chunk-summary']",
             "##### Iteration 2", "join the summaries", "Finished: **ok** after 2 iteration(s).",
             "Result:\n\n```\nchunk-summary | chunk-summary | chunk-summary",
             "### Step 3: python", '"code": "x = 42\\nprint(x)"', "Result:\n\n```\n42\n```",
             "### Step 4: finish", "## Answer\n\nThree summaries, x=42.", "## Usage\n\n",
             "| openai/root |", "| openai/sub |"]
    order.remove("*0 sub-model")  # a cell without LM calls says nothing about them
    positions = [text.find(piece) for piece in order]
    assert -1 not in positions, [p for p, at in zip(order, positions, strict=True) if at < 0]
    assert positions == sorted(positions)
    assert text.count("###### RLM `") == 3


async def test_a_session_exports_its_documents_and_turns(recorded):
    settings, session_id, turn_id = recorded
    async with Store.from_settings(settings) as store:
        data = json.loads(await export_session(store, session_id, "json"))
        text = await export_session(store, session_id, "markdown")
        turn = json.loads(await export_turn(store, turn_id))["turn"]
    assert data["format"] == "fleet-rlm-session" and data["session"]["title"] == "Parts"
    assert [d["name"] for d in data["documents"]] == ["parts.txt"]
    assert data["turns"] == [turn]
    assert text.startswith("# Parts\n") and "- parts.txt (text, 2,000 characters)" in text
    assert "## Turn 1 — ok" in text and "#### Step 2: rlm_query" in text


async def test_unknown_ids_and_formats_are_errors(recorded):
    settings, session_id, turn_id = recorded
    async with Store.from_settings(settings) as store:
        with pytest.raises(NotFound):
            await export_turn(store, "nope")
        with pytest.raises(NotFound):
            await export_session(store, "nope", "markdown")
        with pytest.raises(ValueError, match="json"):
            await export_turn(store, turn_id, "html")


def fleet_export(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "fleet_rlm.cli", "export", *args], env=env,
                          text=True, capture_output=True, timeout=60)


async def test_fleet_export(recorded, tmp_path):
    settings, session_id, turn_id = recorded
    async with Store.from_settings(settings) as store:
        markdown = await export_turn(store, turn_id, "markdown")
        session_json = await export_session(store, session_id)
    data_dir = settings.data_dir

    done = fleet_export(data_dir, turn_id)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["turn"]["id"] == turn_id

    out = tmp_path / "turn.md"
    done = fleet_export(data_dir, turn_id, "--format", "markdown", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == markdown and done.stdout == ""

    done = fleet_export(data_dir, session_id, "--session")
    assert done.returncode == 0 and done.stdout == session_json

    done = fleet_export(data_dir, "no-such-turn")
    assert done.returncode == 1 and "no turn with id 'no-such-turn'" in done.stderr
    done = fleet_export(data_dir, turn_id, "--format", "html")
    assert done.returncode == 1 and "--format must be one of json, markdown" in done.stderr
    done = fleet_export(tmp_path / "empty", turn_id)  # no database there yet
    assert done.returncode == 1 and "no turn with id" in done.stderr
