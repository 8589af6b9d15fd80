"""Model steps that survive bad replies.

Every step the agent or an RLM node asks of the model (an agent step, an RLM iteration, an
extract) goes through `predict`: the reply is parsed as dspy's ChatAdapter parses it, then more
leniently (a JSON object, markdown headings, a bare code fence for a `code` field); a reply that
still cannot be read is retried with the parse error shown to the model, and the last attempt goes
through dspy's JSONAdapter. Each attempt is a model call on the run's budget; the attempts of one
step are bounded by `FLEET_MAX_STEP_ATTEMPTS` and the retries of the whole turn (every node of its
tree) by `FLEET_MAX_TURN_RETRIES`. Each retry is reported as an `error` event naming the attempt.
A step whose attempts run out raises `UnreadableReply`.

Also here: how an agent step's tool call is checked before it runs (an unknown tool or a bad
argument is an observation for the model), and which code an RLM iteration's reply runs.
"""

from __future__ import annotations

import functools
import inspect
import re
import textwrap
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import dspy
from dspy import AdapterParseError, ChatAdapter, JSONAdapter

from ..events import NodeRef
from .dspy_compat import parse_value, strip_code_fences

T = TypeVar("T")
OPTIONAL_TEXT = ("reasoning", "next_thought")
REPLY_CHARS = 2_000  # of a bad reply, shown back to the model
REASON_CHARS = 600
FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
MARKER = re.compile(r"^\s*\[\[\s*#*\s*\w+\s*#*\s*\]\]\s*$")
DECORATION = "#*_`[]:= \t"
INLINE = re.compile(r"^\s*(?:\*\*|__)?([A-Za-z][\w ]{0,40}?)(?:\*\*|__)?\s*:\s*(?:\*\*|__)?"
                    r"\s*(\S.*)$")


class UnreadableReply(Exception):
    """A run outcome: the model gave no reply a step could read, in every attempt allowed."""

    def __init__(self, what: str, attempts: int, reason: str, turn_spent: bool = False) -> None:
        super().__init__(what, attempts, reason, turn_spent)
        self.what, self.attempts, self.reason, self.turn_spent = what, attempts, reason, turn_spent

    def __str__(self) -> str:
        why = (f"after {self.attempts} attempt(s), with this turn's retries spent "
               "(FLEET_MAX_TURN_RETRIES)" if self.turn_spent
               else f"in {self.attempts} attempt(s) (FLEET_MAX_STEP_ATTEMPTS)")
        return f"the model's reply to {self.what} could not be read {why}: {self.reason}"


class RetryAllowance:
    """The retries one turn may make, shared by every node of its tree."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True


# -- lenient parsing -------------------------------------------------------------------------

def _field_values(signature: type[dspy.Signature], raw: dict[str, Any]) -> dict[str, Any] | None:
    fields = signature.output_fields
    if raw:  # a reply that skipped its thinking still says what to do
        raw = {**{name: "" for name in OPTIONAL_TEXT if name in fields}, **raw}
    if not set(fields) <= set(raw):
        return None
    try:
        return {name: parse_value(raw[name], fields[name].annotation) for name in fields}
    except (ValueError, TypeError):
        return None


def _json_fields(signature: type[dspy.Signature], text: str) -> dict[str, Any] | None:
    candidates = [m.group(2) for m in FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start, end = candidate.find("{"), candidate.rfind("}")
        if start < 0 or end <= start:
            continue
        try:
            value = parse_value(candidate[start:end + 1], dict[str, Any])
        except (ValueError, TypeError):
            continue
        if isinstance(value, dict):
            raw = {k: v for k, v in value.items() if k in signature.output_fields}
            parsed = _field_values(signature, raw)
            if parsed is not None:
                return parsed
    return None


def _heading_fields(signature: type[dspy.Signature], text: str) -> dict[str, Any] | None:
    """Sections under lines that name the output fields (`## answer`, `**Answer:**`, `answer:`,
    `[[ answer ]]`), in any order; `answer: 42` on one line too."""
    names = {_key(name): name for name in signature.output_fields}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        label = _key(line.strip().strip(DECORATION))
        inline = INLINE.match(line)
        if inline and _key(inline.group(1)) in names \
                and names[_key(inline.group(1))] not in sections:
            current = names[_key(inline.group(1))]
            sections[current] = [inline.group(2)]
        elif label in names:
            current = names[label]
            sections.setdefault(current, [])
        elif MARKER.match(line):
            current = None  # another section (`[[ ## completed ## ]]`)
        elif current is not None:
            sections[current].append(line)
    raw = {name: "\n".join(lines).strip() for name, lines in sections.items()}
    return _field_values(signature, raw)


def _key(name: str) -> str:
    return re.sub(r"[\s_]+", "_", name.strip().lower())


def _fenced_code_fields(signature: type[dspy.Signature], text: str) -> dict[str, Any] | None:
    """A reply that is prose around a code fence, for a signature of text fields and `code`."""
    fields = signature.output_fields
    if "code" not in fields or any(f.annotation is not str for f in fields.values()):
        return None
    first = FENCE.search(text)
    if first is None:
        return None
    prose = text[:first.start()].strip()
    raw = {name: prose for name in fields}
    raw["code"] = text[first.start():]
    return _field_values(signature, raw)


def _xml_fields(signature: type[dspy.Signature], text: str) -> dict[str, Any] | None:
    raw = {}
    for name in signature.output_fields:
        match = re.search(rf"<{name}>(.*?)(?:</{name}>|\Z)", text, re.DOTALL | re.IGNORECASE)
        if match:
            raw[name] = match.group(1).strip()
    return _field_values(signature, raw)


def _fenced_reply(signature: type[dspy.Signature], text: str) -> dict[str, Any] | None:
    """ChatAdapter's format inside one code fence around the whole reply."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith("```") or lines[-1].strip() != "```":
        return None
    try:
        return ChatAdapter().parse(signature, "\n".join(lines[1:-1]))
    except AdapterParseError:
        return None


def lenient_parse(signature: type[dspy.Signature], text: str) -> dict[str, Any] | None:
    """The output fields read from a reply that is not in ChatAdapter's format, or None."""
    for parse in (_fenced_reply, _json_fields, _xml_fields, _heading_fields,
                  _fenced_code_fields):
        fields = parse(signature, text)
        if fields is not None:
            return fields
    return None


@functools.lru_cache(maxsize=256)
def _as_text_fields(signature: type[dspy.Signature], names: frozenset[str]) -> type:
    for name in names & set(signature.output_fields):
        signature = signature.with_updated_fields(name, type_=str)
    return signature


class _StepAdapterMixin:
    """Parses leniently; shows the previous bad reply and why it failed, when given one.
    `text_fields`: output fields read as plain text whatever their type (the agent's tool name,
    so an unknown tool becomes an observation, not a parse failure)."""

    feedback: tuple[str, str] | None
    text_fields: frozenset[str]

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        signature = _as_text_fields(signature, self.text_fields)  # type: ignore[arg-type]
        try:
            return super().parse(signature, completion)  # type: ignore[misc]
        except AdapterParseError:
            fields = lenient_parse(signature, completion)
            if fields is None:
                raise
            return fields

    def format(self, signature: type[dspy.Signature], demos: list, inputs: dict) -> list[dict]:
        messages = super().format(signature, demos, inputs)  # type: ignore[misc]
        if self.feedback is None:
            return messages
        reply, reason = self.feedback
        requirements = self.user_message_output_requirements(signature)  # type: ignore[attr-defined]
        return [*messages, {"role": "assistant", "content": reply[:REPLY_CHARS] or "(empty)"},
                {"role": "user", "content": f"Your reply could not be read: {reason}\n\n"
                                            f"{requirements}"}]


class StepChatAdapter(_StepAdapterMixin, ChatAdapter):
    def __init__(self, feedback: tuple[str, str] | None = None,
                 text_fields: frozenset[str] = frozenset()) -> None:
        super().__init__(use_json_adapter_fallback=False)
        self.feedback, self.text_fields = feedback, text_fields


class StepJSONAdapter(_StepAdapterMixin, JSONAdapter):
    def __init__(self, feedback: tuple[str, str] | None = None,
                 text_fields: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.feedback, self.text_fields = feedback, text_fields


def parse_reason(exc: AdapterParseError) -> str:
    """Why a reply could not be read, in a line or two (without the reply itself)."""
    text = str(exc)
    head = text.split("Adapter ", 1)[0].strip()
    expected = list(exc.signature.output_fields) if exc.signature is not None else []
    found = list(exc.parsed_result or {})
    if not head:
        head = (f"it has the fields {found} but not {[f for f in expected if f not in found]}"
                if found else "it has none of the fields")
    return f"{head[:REASON_CHARS]} (expected the fields {expected})"


# -- the attempt loop ------------------------------------------------------------------------

def predict(run: Any, node: NodeRef, what: str, call: Callable[[], T], *,
            text_fields: frozenset[str] = frozenset(),
            first: Callable[[], T] | None = None) -> T:
    """`call()` under a step adapter until a reply parses, within the step's attempts and the
    turn's retries. `first`, when given, makes the first attempt instead (a streamed call)."""
    attempts = run.settings.max_step_attempts
    feedback: tuple[str, str] | None = None
    reason = ""
    for attempt in range(1, attempts + 1):
        run.cancel.raise_if_cancelled()
        last = attempt == attempts and attempts >= 3
        adapter_type = StepJSONAdapter if last else StepChatAdapter
        streamed = attempt == 1 and first is not None
        # dspy streams only through its own adapter classes, by name.
        adapter = (ChatAdapter(use_json_adapter_fallback=False) if streamed
                   else adapter_type(feedback, text_fields))
        try:
            with dspy.context(adapter=adapter):
                return first() if streamed else call()  # type: ignore[misc]
        except AdapterParseError as exc:
            reason = parse_reason(exc)
            feedback = (str(exc.lm_response or ""), reason)
        if attempt == attempts:
            break
        if not run.retries.take():
            raise UnreadableReply(what, attempt, reason, turn_spent=True)
        how = ("through the JSON adapter" if attempt + 1 == attempts and attempts >= 3
               else "with the error shown to the model")
        run.stream.emit("error", node, error_type="UnreadableReply",
                        message=f"{what}: {reason}"[:2000],
                        detail=f"attempt {attempt} of {attempts} could not be read; "
                               f"retrying {how}")
    raise UnreadableReply(what, attempts, reason)


# -- the tool an agent step calls ------------------------------------------------------------

STEP_TEXT_FIELDS = frozenset({"next_tool_name"})


def tool_name(raw: Any) -> str:
    """The tool a step names, as models write it: `read_document`, "finish", python()."""
    name = str(raw).strip().strip("`'\"").strip()
    return name[:-2] if name.endswith("()") else name


def tool_call_problem(tools: dict[str, dspy.Tool], name: str, args: Any) -> str | None:
    """Why a step's tool call cannot run, in words for the model; None when it can."""
    tool = tools.get(name)
    if tool is None:
        return (f"There is no tool `{name}`; the tools are: {', '.join(tools)}. "
                "Call one of them by its exact name.")
    if not isinstance(args, dict):
        return (f"The arguments of `{name}` must be a JSON object of argument names to "
                f"values, not {type(args).__name__}; {_signature_text(tool)}")
    problem = _argument_problem(tool, args)
    return f"{problem}; {_signature_text(tool)}" if problem else None


def _argument_problem(tool: dspy.Tool, args: dict) -> str | None:
    unknown = [k for k in args if k not in tool.args]
    if unknown and not tool.has_kwargs:
        return f"`{tool.name}` has no argument {', '.join(f'`{k}`' for k in unknown)}"
    missing = [p for p in _required(tool) if p not in args]
    if missing:
        return f"`{tool.name}` needs {', '.join(f'`{k}`' for k in missing)}"
    return None


def _required(tool: dspy.Tool) -> list[str]:
    if tool.func is None:
        return []
    params = inspect.signature(tool.func).parameters.values()
    return [p.name for p in params if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _signature_text(tool: dspy.Tool) -> str:
    if not tool.args:
        return f"`{tool.name}` takes no arguments ({{}})."
    parts = [f"{name}: {spec.get('type', 'any')}" for name, spec in tool.args.items()]
    return f"its arguments are: {', '.join(parts)}."


# -- the code of an RLM iteration ------------------------------------------------------------

PYTHON_FENCES = frozenset({"python", "py", "python3", "py3", "ipython", ""})
ONE_LINE_FENCE = re.compile(r"^```(\w*)\s+(.*?)```$")
EMPTY_CODE = ("The code field was empty: write Python code to run, or call SUBMIT(...) with the "
              "final outputs.")


def _blocks(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of `text` as (language, body); an unclosed last block (a reply cut
    short) runs to the end."""
    blocks: list[tuple[str, str]] = []
    lang: str | None = None
    body: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        one_line = ONE_LINE_FENCE.match(stripped) if lang is None else None
        if one_line:
            label, inline = one_line.group(1).lower(), one_line.group(2)
            blocks.append((label, inline.strip()) if label in PYTHON_FENCES
                          else ("", f"{one_line.group(1)} {inline}".strip()))
        elif lang is None:
            if stripped.startswith("```"):
                label = stripped[3:].strip()
                lang, body = (label.split(maxsplit=1)[0].lower() if label else ""), []
        elif stripped.startswith("```"):
            blocks.append((lang, textwrap.dedent("\n".join(body)).strip()))
            lang = None
        else:
            body.append(line)
    if lang is not None:
        blocks.append((lang, textwrap.dedent("\n".join(body)).strip()))
    return blocks


def cell_code(text: str) -> tuple[str, list[str]]:
    """The Python to run from an iteration's `code` field, and notes for the model on what was
    left out. Unfenced text runs as it is. Of fenced blocks, every Python (or unlabelled) one
    runs, in order (dspy runs only the first); blocks in other languages are left out with a
    note, and a reply with only those is a SyntaxError, as in dspy."""
    text = text.strip()
    if not text:
        raise SyntaxError(EMPTY_CODE)
    if "```" not in text:
        if len(text) > 2 and text[0] == text[-1] == "`" and "`" not in text[1:-1]:
            text = text[1:-1]  # a one-liner in inline code
        return text, []
    lines = text.splitlines()
    while len(lines) >= 2 and lines[0].strip() == "```" and lines[-1].strip() == "```":
        lines = lines[1:-1]  # decorative outer fences, as dspy strips them
    blocks = _blocks("\n".join(lines))
    if not blocks:
        return strip_code_fences(text), []
    code = [body for lang, body in blocks if lang in PYTHON_FENCES and body]
    other = [lang for lang, _ in blocks if lang not in PYTHON_FENCES]
    if not code:
        if other:
            raise SyntaxError(f"Expected Python code but got ```{other[0]} fence. Write Python "
                              f"code, not {other[0]}.")
        raise SyntaxError(EMPTY_CODE)
    notes = [f"[Note] A ```{lang} block was not run: only Python blocks run." for lang in other]
    return "\n\n".join(code), notes
