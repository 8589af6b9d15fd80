"""The note that names a message's attachments for the agent, and the typed text kept apart."""

from __future__ import annotations

from fleet_rlm.attachments import note, typed_text


def test_the_note_follows_the_text_and_comes_off_exactly():
    sent = "sum them" + note(["a.txt", "b (1).csv"])
    assert sent == "sum them\n\n(Attached documents: a.txt, b (1).csv)"
    assert typed_text(sent, ["a.txt", "b (1).csv"]) == "sum them"


def test_without_attachments_or_another_note_the_text_stays():
    assert note([]) == ""
    assert typed_text("plain", []) == "plain"
    # A turn recorded before attachments were kept apart has none: its text is as stored.
    old = "sum them\n\n(Attached documents: a.txt)"
    assert typed_text(old, []) == old
    assert typed_text(old, ["b.txt"]) == old
