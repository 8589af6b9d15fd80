"""`fleet chat` in a pseudo-terminal against the scripted LM server: documents, a streamed answer,
an ask_user question answered inline, sessions, Ctrl-C cancelling a turn, and reopening."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from fleet_rlm.testing import dspy_reply

pytestmark = pytest.mark.slow

FLEET = Path(sys.executable).with_name("fleet")
PROMPT = "you> "
ANSWER = r"then `\[\[ ## answer ## \]\]`"


def message(text: str) -> str:
    """Matches a prompt whose message field (not the conversation history) is `text`."""
    return rf"\[\[ ## message ## \]\]\n{re.escape(text)}"


def step(thought: str, tool: str, **args: object) -> str:
    return dspy_reply(next_thought=thought, next_tool_name=tool, next_tool_args=json.dumps(args))


COUNT = "How many needles are in the notes?"
SUMMARY = "Summarise the document."
SLOW = "Think very hard about this."
WHICH = "How many were there back then?"
RULES = [  # first match wins: each turn's final answer, then its later steps, then its first
    {"match": message(WHICH) + ".*" + ANSWER, "model": "root", "times": 1,
     "reply": dspy_reply(reasoning="looked", answer="In 1999 there were 7 needles.")},
    {"match": message(WHICH) + ".*observation_0", "model": "root", "times": 1,
     "reply": step("the user said 1999", "finish")},
    {"match": message(WHICH), "model": "root", "times": 1,
     "reply": step("when?", "ask_user", question="Which year?")},
    {"match": message(COUNT) + ".*" + ANSWER, "model": "root", "times": 1,
     "reply": dspy_reply(reasoning="counted", answer="The notes hold 3 needles in the haystack.")},
    {"match": message(SUMMARY) + ".*" + ANSWER, "model": "root", "times": 1,
     "reply": dspy_reply(reasoning="read", answer="notes.txt is hay with a few needles.")},
    {"match": message(SUMMARY) + ".*observation_0", "model": "root", "times": 1,
     "reply": step("the user chose", "finish")},
    {"match": message(SUMMARY), "model": "root", "times": 1,
     "reply": step("which one?", "ask_user", question="Which document do you mean?",
                   choices=["all of them", "notes.txt"])},
    {"match": message(COUNT), "model": "root", "times": 1,
     "reply": step("the list says enough", "finish")},
    {"match": message(SLOW), "model": "root", "times": 1, "delay_ms": 8000,
     "reply": step("too late", "finish")},
]


def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env["FLEET_ALLOW_UNPRICED_MODELS"] = "true"  # the scripted models have no price
    env.update(FLEET_DATA_DIR=str(tmp_path / "data"), FLEET_ROOT_MODEL="openai/root",
               FLEET_SUB_MODEL="openai/sub", FLEET_API_KEY="test", TERM="xterm")
    return env


def spawn(tmp_path: Path, server, *args: str) -> pexpect.spawn:
    chat = pexpect.spawn(str(FLEET), ["chat", "--api-base", server.api_base, *args],
                         cwd=str(tmp_path), env=env(tmp_path), encoding="utf-8", timeout=20,
                         dimensions=(60, 200))
    chat.logfile_read = open(tmp_path / "transcript.txt", "a")  # noqa: SIM115 - closed with chat
    return chat


def say(chat: pexpect.spawn, line: str, prompt: str = PROMPT) -> None:
    chat.expect_exact(prompt)
    chat.sendline(line)


def finished(chat: pexpect.spawn) -> int:
    chat.expect(pexpect.EOF)
    chat.close()
    chat.logfile_read.close()
    return chat.exitstatus


def test_chat_session(tmp_path, scripted_lm):
    server = scripted_lm(RULES)
    notes = "hay needle hay needle hay needle hay\n"
    (tmp_path / "notes.txt").write_text(notes)
    chat = spawn(tmp_path, server)

    say(chat, "/docs add notes.txt")
    chat.expect(r"session ([0-9a-f]+)")
    session_id = chat.match.group(1)
    chat.expect_exact(f"added notes.txt (text, {len(notes)} chars)")
    say(chat, "/docs")
    chat.expect_exact(f"text · {len(notes)} chars")
    say(chat, "/docs add missing.txt")
    chat.expect_exact("cannot read missing.txt: No such file or directory")

    say(chat, COUNT)  # the tree, the streamed answer, then what the turn used
    chat.expect_exact("agent")
    chat.expect_exact("finish()")
    chat.expect_exact("The notes hold 3 needles in the haystack.")
    chat.expect(r"ok · 2 calls · [\d,]+ tokens · cost unknown")

    say(chat, SUMMARY)
    chat.expect_exact("Which document do you mean?")
    chat.expect(r"1\S* all of them\r?\n.*2\S* notes\.txt")  # the options, answered by number
    say(chat, "2", prompt="answer> ")
    chat.expect_exact("notes.txt is hay with a few needles.")
    chat.expect(r"ok · 3 calls")  # both halves of the turn
    say(chat, "/budget")
    chat.expect(r"each turn: 200 calls .*\n.*last turn: 3 calls")
    say(chat, "/budget max_lm_calls 150")  # max_calls's old name still works
    chat.expect_exact("max_calls = 150 for the next turns")

    say(chat, WHICH)  # left waiting: answered after a restart
    chat.expect_exact("Which year?")
    say(chat, "/sessions", prompt="answer> ")
    chat.expect(rf"\* {session_id}  notes\.txt")
    say(chat, "/new", prompt="answer> ")
    chat.expect_exact("new session")
    calls = server.stats()["calls"]
    say(chat, SLOW)
    chat.expect(r"session ([0-9a-f]+)")
    assert chat.match.group(1) != session_id
    deadline = time.monotonic() + 20
    while server.stats()["calls"] == calls:  # the slow call is in flight
        assert time.monotonic() < deadline, "the turn never called the model"
        time.sleep(0.05)
    interrupted = time.monotonic()
    chat.sendintr()
    chat.expect_exact("cancelled", timeout=5)
    chat.expect(r"cancelled · \d+ calls")
    assert time.monotonic() - interrupted < 5
    say(chat, "/docs")  # the new session has none, and the chat goes on
    chat.expect_exact("no documents yet")
    say(chat, "/exit")
    assert finished(chat) == 0
    transcript = (tmp_path / "transcript.txt").read_text()
    assert "Traceback" not in transcript and "too late" not in transcript

    chat = spawn(tmp_path, server, "--session", session_id)
    chat.expect_exact(f"{session_id} · 3 turns")
    chat.expect_exact(COUNT)
    chat.expect_exact("The notes hold 3 needles in the haystack.")
    chat.expect_exact("Which document do you mean?")  # the question answered, with its reply
    chat.expect(rf"{PROMPT}\S*notes\.txt\r?\n")
    chat.expect_exact("notes.txt is hay with a few needles.")
    chat.expect_exact("Which year?")
    chat.expect_exact("(waiting for your answer)")
    say(chat, "1999", prompt="answer> ")
    chat.expect_exact("In 1999 there were 7 needles.")
    chat.expect_exact(PROMPT)
    chat.sendintr()  # Ctrl-C at the prompt leaves
    assert finished(chat) == 130
    assert "Traceback" not in (tmp_path / "transcript.txt").read_text()
    server.verify()


def test_unknown_session_is_a_clear_error(tmp_path, scripted_lm):
    server = scripted_lm([])
    done = subprocess.run([str(FLEET), "chat", "--api-base", server.api_base, "--session", "nope"],
                          cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 1
    assert "no session nope" in done.stderr and "Traceback" not in done.stderr


def test_end_of_input_leaves(tmp_path, scripted_lm):
    server = scripted_lm([])
    done = subprocess.run([str(FLEET), "chat", "--api-base", server.api_base],
                          cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True,
                          input="/sessions\n/bogus\n", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "no sessions yet" in done.stdout
    assert "not a command: /bogus" in done.stderr
