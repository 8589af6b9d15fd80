"""Documents sent with a message. The client names them by id in a structured field; the agent
reads their names in a note after the message's text (it finds the documents themselves in its
tools), and the turn keeps both the text the agent read and the attachments apart from it."""

from __future__ import annotations

from collections.abc import Sequence


def note(names: Sequence[str]) -> str:
    """What follows the message's text for the agent ("" without attachments)."""
    return f"\n\n(Attached documents: {', '.join(names)})" if names else ""


def typed_text(user_message: str, names: Sequence[str]) -> str:
    """The message as its author typed it: the agent's text without the note that `note` made
    from these names (unchanged when it does not end with that note)."""
    return user_message.removesuffix(note(names)) if names else user_message
