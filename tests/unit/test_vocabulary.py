"""One vocabulary: one turn status, one name per limit, the old limit names still accepted with a
warning where they were public (settings, REST, a message's limits, the settings file)."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from fleet_rlm.budget import Limits, renamed_limits
from fleet_rlm.config import Settings
from fleet_rlm.events import EventStream, NodeRef, parse_event
from fleet_rlm.server import schemas, settings_file
from fleet_rlm.server.frames import CLIENT_FRAMES
from fleet_rlm.status import ACTIVE_STATUSES, FINISHED_STATUSES, TURN_STATUSES, TurnStatus
from fleet_rlm.store.models import Turn

DEPRECATED = "`max_lm_calls` is deprecated; use `max_calls`"


def test_the_status_words_are_one_set_shared_by_store_and_events() -> None:
    assert TURN_STATUSES == ("running", "waiting", "ok", "budget", "cancelled", "error",
                             "interrupted")
    assert set(ACTIVE_STATUSES) | set(FINISHED_STATUSES) == set(TURN_STATUSES)
    check = next(c for c in Turn.__table__.constraints if getattr(c, "name", "") and
                 "status" in str(c.name))
    assert all(f"'{word}'" in str(check.sqltext) for word in TURN_STATUSES)
    assert "'failed'" not in str(check.sqltext) and "'done'" not in str(check.sqltext)


def test_turn_finished_says_a_store_status_and_refuses_the_old_words() -> None:
    stream = EventStream("t")
    usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tokens": 0, "usd": 0.0,
             "usd_unknown_calls": 0, "elapsed_s": 0.0, "limits": Limits().model_dump()}
    for word in ("ok", "budget", "interrupted", "waiting"):
        event = stream.emit("turn_finished", NodeRef.root(), status=word, answer=None,
                            usage=usage)
        assert event.status == TurnStatus(word)
        assert event.model_dump(mode="json")["status"] == word
        assert parse_event(event.model_dump_json()).status == word
    for old in ("done", "failed", "running"):
        with pytest.raises(pydantic.ValidationError):
            stream.emit("turn_finished", NodeRef.root(), status=old, answer=None, usage=usage)


def test_the_calls_limit_has_one_name_in_settings_and_limits() -> None:
    settings = Settings(max_calls=7)
    assert settings.max_calls == 7 and Limits.from_settings(settings).max_calls == 7
    assert "max_lm_calls" not in Settings.model_fields
    assert set(Limits.model_fields) <= set(Settings.model_fields)


def test_the_old_settings_name_is_accepted_with_a_warning(monkeypatch) -> None:
    monkeypatch.delenv("FLEET_MAX_CALLS", raising=False)
    monkeypatch.delenv("FLEET_MAX_LM_CALLS", raising=False)
    with pytest.warns(FutureWarning, match=DEPRECATED):
        assert Settings(max_lm_calls=9).max_calls == 9
    monkeypatch.setenv("FLEET_MAX_LM_CALLS", "11")
    with pytest.warns(FutureWarning, match="FLEET_MAX_LM_CALLS"):
        assert Settings().max_calls == 11
    monkeypatch.setenv("FLEET_MAX_CALLS", "12")  # the new name wins
    with pytest.warns(FutureWarning):
        assert Settings().max_calls == 12


def test_the_new_environment_name_is_read(monkeypatch) -> None:
    monkeypatch.delenv("FLEET_MAX_LM_CALLS", raising=False)
    monkeypatch.setenv("FLEET_MAX_CALLS", "13")
    assert Settings().max_calls == 13


def test_renamed_limits_maps_old_names_and_refuses_both() -> None:
    assert renamed_limits({"max_usd": 1}, "limits") == {"max_usd": 1}
    with pytest.warns(FutureWarning, match=DEPRECATED):
        assert renamed_limits({"max_lm_calls": 2, "max_usd": 1}, "limits") == {
            "max_calls": 2, "max_usd": 1}
    with pytest.raises(ValueError, match="give `max_calls` only"):
        renamed_limits({"max_lm_calls": 2, "max_calls": 3}, "limits")


def test_rest_limits_take_both_spellings_and_answer_with_the_new_one() -> None:
    assert schemas.Limits.model_validate({"max_calls": 3}).model_dump(exclude_none=True) == {
        "max_calls": 3}
    with pytest.warns(FutureWarning, match=DEPRECATED):
        old = schemas.Limits.model_validate({"max_lm_calls": 3})
    assert old.model_dump(exclude_none=True) == {"max_calls": 3}
    with pytest.raises(pydantic.ValidationError, match="give `max_calls` only"):
        schemas.Limits.model_validate({"max_lm_calls": 3, "max_calls": 4})
    with pytest.raises(pydantic.ValidationError, match="max_calls"):
        schemas.Limits.model_validate({"max_calls": 0})
    described = settings_file.describe(Settings(max_calls=5))
    assert described.limits["max_calls"] == 5 and "max_lm_calls" not in described.limits


def test_a_message_frame_carries_its_limits_as_given() -> None:
    frame = CLIENT_FRAMES.validate_python({"type": "message", "text": "hi",
                                           "limits": {"max_calls": 2}})
    assert frame.limits == {"max_calls": 2}


def test_a_settings_file_saved_with_the_old_name_loads(tmp_path: Path) -> None:
    settings_file.settings_path(tmp_path).write_text(json.dumps({"max_lm_calls": 4}))
    with pytest.warns(FutureWarning, match=DEPRECATED):
        values = settings_file.load(tmp_path)
    assert values == {"max_calls": 4}
    assert settings_file.apply(Settings(data_dir=tmp_path), values).max_calls == 4
    settings_file.settings_path(tmp_path).write_text(
        json.dumps({"max_lm_calls": 4, "max_calls": 5}))
    with pytest.raises(RuntimeError, match="give `max_calls` only"):
        settings_file.load(tmp_path)
