"""S-NIAH: RULER's single needle in a haystack (Hsieh et al. 2024, NVIDIA/RULER
`scripts/data/synthetic/niah.py`), as the RLM paper runs it: 50 tasks over 2^13 to 2^18 tokens.

As in RULER: the needle sentence "One of the special magic <kind>s for <key> is: <value>.", a key
that is an adjective-noun word, a value that is a 7-digit number, a UUID4 or a word, one needle
per context placed at a sentence boundary at a depth drawn from RULER's grid of 40 depths
(0-100 %), the opening "A special magic <kind> is hidden within the following text. ..." and the
question "What is the special magic <kind> for <key> mentioned in the provided text?".

Where this differs from RULER: the haystack is plain prose from `data/filler.txt` (original
sentences shipped with the package, reshuffled per task) rather than Paul Graham's essays, which
we do not ship; lengths are counted at 4 characters a token rather than with a model's tokenizer;
the key words come from the short lists below rather than wonderwords' lists; no answer prefix
is appended. A value is matched as a whole word, never inside another word (RULER matches
substrings, so `emu` would be found in `lemur`).
"""

from __future__ import annotations

import bisect
import random
import re
import uuid
from collections.abc import Sequence
from functools import cache
from typing import Literal

from fleet_rlm.bench.tasks import CHARS_PER_TOKEN, Task, approx_tokens, data_text

Kind = Literal["number", "uuid", "word"]

BENCHMARK = "sniah"
# In characters: 2^13 ... 2^18 tokens at 4 characters a token.
DEFAULT_LENGTHS: tuple[int, ...] = tuple(2**p * CHARS_PER_TOKEN for p in range(13, 19))
DEFAULT_DEPTHS: tuple[float, ...] = tuple(round(100 * k / 39) / 100 for k in range(40))
DEFAULT_KINDS: tuple[Kind, ...] = ("number", "uuid", "word")

_KEY_ADJ = (
    "amber", "brisk", "candid", "dusty", "eager", "fabled", "gilded", "hollow", "ivory", "jagged",
    "keen", "lunar", "mellow", "nimble", "opaque", "placid", "quaint", "rustic", "sombre", "tepid",
    "umber", "vivid", "wistful", "zealous",
)
_KEY_NOUN = (
    "anchor", "beacon", "cipher", "dynamo", "ember", "falcon", "glacier", "harpoon", "isthmus",
    "juniper", "kestrel", "lantern", "monolith", "nebula", "obelisk", "prism", "quarry", "raven",
    "sextant", "trellis", "upland", "vortex", "walrus", "zenith",
)
# Values are words that never occur in the filler, so a hit can only come from the needle.
_VALUE_WORDS = (
    "aardvark", "bagpipe", "cardamom", "dulcimer", "eucalyptus", "flamingo", "gazebo", "hibiscus",
    "iguana", "jackal", "kumquat", "lychee", "marzipan", "narwhal", "ocelot", "pangolin",
    "quokka", "rhubarb", "saffron", "tamarind", "ukulele", "vermouth", "wombat", "xylophone",
    "yodeler", "zeppelin", "armadillo", "bassoon", "chinchilla", "dromedary", "emu", "fondue",
    "gondola", "harmonica", "impala", "jacaranda", "kazoo", "lemur", "mongoose", "nutmeg",
    "oregano", "pelican", "quinoa", "rutabaga", "sitar", "toucan", "vicuna", "wasabi",
)


@cache
def filler_sentences() -> tuple[str, ...]:
    return tuple(s.strip() for s in data_text("filler.txt").splitlines() if s.strip())


def _value(rng: random.Random, kind: Kind) -> str:
    if kind == "number":
        return str(rng.randint(1_000_000, 9_999_999))
    if kind == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return rng.choice(_VALUE_WORDS)


def _haystack(rng: random.Random, budget: int) -> list[str]:
    """Sentences with their trailing separators, totalling just under `budget` characters."""
    pool = filler_sentences()
    pieces: list[str] = []
    order: list[str] = []
    size = 0
    until_break = rng.randint(3, 8)
    while True:
        if not order:
            order = rng.sample(pool, len(pool))
        sentence = order.pop()
        until_break -= 1
        sep = " "
        if until_break == 0:  # paragraphs make the haystack read like prose, not a list
            sep, until_break = "\n\n", rng.randint(3, 8)
        piece = sentence + sep
        if size + len(piece) > budget:
            return pieces
        pieces.append(piece)
        size += len(piece)


def make_task(length: int, depth: float, kind: Kind, seed: int, index: int = 0) -> Task:
    """One task; every random choice comes from an RNG seeded by all the arguments."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    rng = random.Random(f"sniah:{seed}:{length}:{float(depth)!r}:{kind}:{index}")
    key = f"{rng.choice(_KEY_ADJ)}-{rng.choice(_KEY_NOUN)}"
    value = _value(rng, kind)
    needle = f"One of the special magic {kind}s for {key} is: {value}."
    opening = (f"A special magic {kind} is hidden within the following text. Make sure to "
               f"memorize it. I will quiz you about the {kind} afterwards.\n")
    pieces = _haystack(rng, max(length - len(opening) - len(needle) - 1, 0))
    starts = [0]
    for piece in pieces:
        starts.append(starts[-1] + len(piece))
    # Nearest sentence boundary to the requested depth of the haystack.
    goal = depth * starts[-1]
    k = bisect.bisect_left(starts, goal)
    if k > 0 and (k == len(starts) or goal - starts[k - 1] <= starts[k] - goal):
        k -= 1
    before, after = "".join(pieces[:k]), "".join(pieces[k:]).rstrip()
    hay = f"{before}{needle} {after}".rstrip() if after else f"{before}{needle}"
    context = opening + hay
    position = len(before) / len(hay)
    question = f"What is the special magic {kind} for {key} mentioned in the provided text?"
    return Task(
        # The length in the id is in tokens, as the report and --lengths count it.
        id=f"sniah-{kind}-{length // CHARS_PER_TOKEN}-d{depth:g}-s{seed}-{index}",
        benchmark=BENCHMARK,
        context=context,
        question=question,
        gold=value,
        meta={
            "family": kind,
            "kind": kind,
            "key": key,
            "depth": depth,
            "needle_position": position,
            "target_chars": length,
            "context_chars": len(context),
            "approx_tokens": approx_tokens(context),
            "seed": seed,
            "source": "ruler-construction",
        },
    )


def generate(
    n: int = 1,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    depths: Sequence[float] = DEFAULT_DEPTHS,
    kinds: Sequence[Kind] = DEFAULT_KINDS,
) -> list[Task]:
    """`n` tasks for every (length in characters, depth, kind) cell of the grid."""
    return [
        make_task(length, depth, kind, seed, i)
        for length in lengths
        for depth in depths
        for kind in kinds
        for i in range(n)
    ]


def spread(n: int, seed: int, length: int, kinds: Sequence[Kind] = DEFAULT_KINDS) -> list[Task]:
    """`n` tasks of one length (characters): depths drawn from RULER's grid without repeats
    until it is used up, kinds in turn."""
    rng = random.Random(f"sniah-spread:{seed}:{length}")
    depths: list[float] = []
    while len(depths) < n:
        depths += rng.sample(DEFAULT_DEPTHS, len(DEFAULT_DEPTHS))
    return [make_task(length, depths[i], kinds[i % len(kinds)], seed, i) for i in range(n)]


def matches(gold: str, answer: str) -> bool:
    """The gold value appears in the answer as a whole word (or whole value), any case: `emu`
    does not match `lemur`, nor `1234567` match `12345678`."""
    return re.search(rf"(?<!\w){re.escape(gold)}(?!\w)", answer, re.IGNORECASE) is not None


def score_values(golds: Sequence[str], answer: str) -> float:
    """RULER's all-values score: the share of gold values the answer names."""
    return sum(matches(g, answer) for g in golds) / len(golds)


def score(task: Task, answer: str) -> float:
    """1.0 when the answer names the needle's value as a whole word, else 0.0."""
    golds = task.gold if isinstance(task.gold, list) else [task.gold]
    return score_values(golds, answer)
