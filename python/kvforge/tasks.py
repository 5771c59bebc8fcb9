"""Verifiable problems for the gate trainers, from the engine's tasks (the
cases and verifiers of `kvforge eval tasks`, bound from C++): a prompt
(token ids), the stop string that ends an answer, and a verifier."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, List

from . import _core


@dataclass
class Problem:
    tokens: List[int]
    verify: Callable[[str], bool] = field(repr=False)
    stop: List[str] = field(default_factory=list)
    expected: str = ""


def make_problems(model: _core.Model, task: str, seed: int, n: int, length: int) -> List[Problem]:
    """n problems of a generated task (trial i = problem i; of a list of
    tasks, problem i is of task i % len), or the first n records of a
    GSM8K-format .jsonl file."""
    stop = [model.chat_turn_end] if model.chat_turn_end else []
    if task.endswith(".jsonl"):
        if not os.path.isfile(task):
            raise ValueError(f"dataset {task} not found")
        records = _core.read_gsm8k_jsonl(task)[:n]
        if not records:
            raise ValueError(f"{task}: no problems (empty dataset)")
        return [Problem(_core.question_prompt(model, q), lambda a, e=e: _core.task_answer_correct(a, e, True), stop, e)
                for q, e in records]
    names = task.split(",")  # several tasks: problem i is of task i % len(names)
    for t in names:
        if t not in _core.task_names():
            raise ValueError(f"unknown task {t!r} (expected one of {', '.join(_core.task_names())}, "
                             f"a comma-separated list of them or a GSM8K-format .jsonl file)")
    out = []
    for i in range(n):
        c = _core.task_case(model, names[i % len(names)], seed, length, i)
        out.append(Problem(c.tokens, lambda a, e=c.expected: _core.task_answer_correct(a, e), stop, c.expected))
    return out
