"""Optimised instructions loaded into the agent's and the engine's predictors.

A `Program` is one target's version: the instructions of each predictor (by its name in
`named_predictors()`) and the release of the program it was optimised on: a fingerprint of the
module's signature and of each predictor's input and output fields. A module takes a version's
instructions only when its own release is the same: a release that changed the program (its
predictors or their fields) refuses it, and a child RLM with another signature keeps its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import dspy

Target = Literal["agent", "rlm"]
TARGETS: tuple[Target, ...] = ("agent", "rlm")


@dataclass(frozen=True)
class Program:
    version_id: str
    target: Target
    instructions: Mapping[str, str]
    release: str


def instructions_of(module: dspy.Module) -> dict[str, str]:
    return {name: pred.signature.instructions for name, pred in module.named_predictors()}


def release_of(module: dspy.Module) -> str:
    """The fingerprint of a module's program: its signature and its predictors' fields."""
    own = getattr(module, "signature", None)
    shape = {"signature": None if own is None else own.signature,
             "predictors": {name: [list(pred.signature.input_fields),
                                   list(pred.signature.output_fields)]
                            for name, pred in module.named_predictors()}}
    text = json.dumps(shape, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load(module: dspy.Module, program: Program | None) -> bool:
    """Give the module's predictors the program's instructions when the program was made for
    this module's release; True when they took them."""
    if program is None or release_of(module) != program.release:
        return False
    for name, pred in module.named_predictors():
        if name in program.instructions:
            pred.signature = pred.signature.with_instructions(program.instructions[name])
    return True
