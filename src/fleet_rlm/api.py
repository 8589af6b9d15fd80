"""The Python API's engine: `fleet_rlm.RecursiveRLM` runs the version of the engine's
instructions the local tenant promoted (`fleet programs promote`), as `fleet run` does. The engine
reads no store; this entry point hands it the promoted version to read, through the session
layer's offline door, on first use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .engine.rlm import ProgramSource
from .engine.rlm import RecursiveRLM as Engine

if TYPE_CHECKING:
    from .config import Settings
    from .engine.programs import Program


def promoted_engine(settings: Settings) -> Program | None:
    """The local tenant's promoted version of the engine, or None (the baseline)."""
    from .sessions.offline import promoted

    return promoted("rlm", settings)


class RecursiveRLM(Engine):
    __doc__ = Engine.__doc__

    def __init__(self, signature: Any = "context, question -> answer", *,
                 program: Program | ProgramSource | Literal["promoted"] | None = "promoted",
                 **options: Any) -> None:
        """`program`: by default ("promoted") the version the local tenant promoted, read from
        the store on first use; None for the baseline, or a `Program`
        (`fleet_rlm.promoted("rlm", settings, tenant)`)."""
        super().__init__(signature, program=promoted_engine if program == "promoted" else program,
                         **options)
