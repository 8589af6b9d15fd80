"""`fleet chat`: the terminal chat loop (`chat_loop`) behind its options."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from .common import err


def chat(
    session: Annotated[str | None, typer.Option(
        help="Reopen this session and show its recent history (ids: /sessions).")] = None,
    model: Annotated[str | None, typer.Option(help="Root model, e.g. openai/gpt-4o-mini.")] = None,
    sub_model: Annotated[str | None, typer.Option(help="Model for sub-calls.")] = None,
    api_base: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint.")] = None,
) -> None:
    """Chat with the agent in the terminal: load documents, watch each turn's tree live.

    /help lists the slash commands. Ctrl-C cancels a running turn; at the prompt it leaves.
    Exit status: 0 after /exit or Ctrl-D; 1 unknown session; 130 interrupted.
    """
    import os

    from pydantic import ValidationError

    from ..config import get_settings, invalid_settings

    try:
        settings = get_settings(root_model=model, sub_model=sub_model, api_base=api_base)
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {escape(invalid_settings(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(f"[bold]fleet chat[/] · {escape(settings.root_model)} "
              f"(sub {escape(settings.effective_sub_model)}) · /help for commands, "
              "Ctrl-C cancels a turn, /exit leaves", highlight=False)
    from .chat_loop import run_chat  # the session service, dspy and the store: after the header

    code = run_chat(settings, session)
    # A cancelled turn's LM request and an unanswered prompt read may still hold threads the
    # interpreter would wait for: leave now that everything is printed and the store is closed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
