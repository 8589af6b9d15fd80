"""Optimise the agent and the engine with dspy.GEPA from what users leave behind.

    datasets.py  examples from feedback, JSONL files and benchmark results; checked before use
    metrics.py   metrics by name: a score and a judge-free feedback text GEPA reflects on
    targets.py   the agent and the engine as GEPA students; the baseline of each
    run.py       one GEPA run under one Budget: the outcome a program version is made of

Versions are kept and promoted through the session service's store door
(`sessions/programs.py`); the engine loads a promoted version (`engine/programs.py`).
"""
