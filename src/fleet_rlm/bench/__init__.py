"""Benchmark tasks for recursive language models: S-NIAH, OOLONG trec_coarse and OOLONG-Pairs.

Each module offers `generate(...) -> list[Task]` (deterministic by seed) and
`score(task, answer) -> float`. Nothing here calls a model or the network.
"""

from fleet_rlm.bench import oolong, pairs, sniah
from fleet_rlm.bench.oolong_score import SCORERS as OOLONG_SCORERS
from fleet_rlm.bench.oolong_score import Scorer
from fleet_rlm.bench.tasks import Task

SCORERS = {
    sniah.BENCHMARK: sniah.score,
    oolong.BENCHMARK: oolong.score,
    pairs.BENCHMARK: pairs.score,
}


def score(task: Task, answer: str, scorer: Scorer = "official") -> float:
    """Score an answer with the scorer of the task's benchmark. Only OOLONG has a second,
    lenient scorer; the other benchmarks have one rule."""
    if task.benchmark == oolong.BENCHMARK:
        return oolong.score(task, answer, scorer)
    return SCORERS[task.benchmark](task, answer)


__all__ = ["OOLONG_SCORERS", "SCORERS", "Scorer", "Task", "oolong", "pairs", "score", "sniah"]
