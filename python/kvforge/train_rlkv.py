"""RLKV (`kvforge heads train --method rlkv`): GRPO on verifiable rewards
with the gates alpha as the only parameters (SPEC.md §4).

Each step takes a batch of problems (each rank its share) and:
1. samples G answers per problem with the engine, the current alpha set as
   its soft gates (the raw distribution: temperature 1, no top-k/p/min-p);
2. scores them with the task's verifier (reward 1 for a correct answer);
3. advantages: reward minus its group's mean, over the batch's std;
4. loss = -mean over answer tokens of the clipped surrogate (log-probs
   recomputed by the twin; the old ones before the first update) plus
   beta' * mean|alpha| with beta' = 1(r > tau) * beta * (exp(r) - 1), no KL;
5. alpha's gradient summed over ranks, clipped, Adam, alpha clamped to [0, 1].
Problems come from self-distillation: only those the full-cache model solves
itself (greedy), shortest own answer first. Writes adapter_weights.tsv."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from . import Context, _core
from .grpo import adaptive_beta, advantages, clipped_objective
from .tasks import Problem, make_problems
from .trainer import GateTraining


@dataclass
class RlkvOptions:
    model: str
    out: str
    task: str = "passkey"     # a task of `kvforge eval tasks` or a GSM8K-format .jsonl file
    steps: int = 50
    batch: int = 4            # problems per step (global)
    group: int = 4            # G answers per problem
    lr: float = 1e-2
    beta: float = 2.5e-3
    tau: float = 0.5
    clip: float = 0.2
    grad_clip: float = 1.0
    updates: int = 1          # optimizer steps per batch of rollouts (mini-batches)
    length: int = 256         # prompt length of generated tasks
    max_new: int = 16         # answer tokens
    pool: int = 64            # candidate problems for self-distillation
    sinks: int = 16
    recent: int = 64
    seed: int = 0
    init: float = 1.0         # every gate's starting value (RLKV: 1, the full model)
    checkpoint_every: int = 10
    threads: int = 1          # PyTorch's and the engine's (more than one is slower on a busy machine)
    progress: bool = True


def curriculum(model: _core.Model, problems: List[Problem], max_new: int, threads: int = 1) -> List[int]:
    """Indices of the problems the full-cache model answers correctly
    (greedy), ordered by the length of its own answer (then by index)."""
    solved = []
    for i, p in enumerate(problems):
        ctx = Context(model, n_ctx=len(p.tokens) + max_new + 1, n_threads=threads)
        res = ctx.generate(p.tokens, n_predict=max_new, temperature=0.0, stop=p.stop)
        if p.verify(model.detokenize(res.tokens)):
            solved.append((len(res.tokens), i))
    return [i for _, i in sorted(solved)]


def sample_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def rollouts(model, problems: List[tuple], alpha: np.ndarray, o: RlkvOptions, step: int):
    """G engine samples per (position in the global batch, problem) under the
    soft gates alpha: [(problem, answer tokens, reward)], problem-major."""
    out = []
    for k, p in problems:
        ctx = Context(model, n_ctx=len(p.tokens) + o.max_new + 1, n_threads=o.threads)
        ctx.set_gates(alpha, o.sinks, o.recent)
        for g in range(o.group):
            ctx.reset()
            res = ctx.generate(p.tokens, n_predict=o.max_new, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                               seed=sample_seed(o.seed, step, k, g), stop=p.stop)
            out.append((p, list(res.tokens), float(p.verify(model.detokenize(res.tokens)))))
    return out


def train_rlkv(o: RlkvOptions, problems: Optional[List[Problem]] = None) -> np.ndarray:
    """Trains and returns the gates; `problems` (prompts with verifiers of
    your own) replace the task's generated ones."""
    t = GateTraining(o, "adapter_weights.tsv", torch.optim.Adam, o.init)
    twin, dp, model = t.twin, t.dp, t.model
    if problems is None:
        problems = make_problems(model, o.task, o.seed, o.pool, o.length)
    if "order" not in t.extra:
        t.extra["order"] = curriculum(model, problems, o.max_new, o.threads)  # the same on every rank
    order = t.extra["order"]
    if not order:
        raise ValueError("self-distillation kept no problem: the full-cache model solves none of the "
                         f"{len(problems)} candidates (try a longer --max-new, a shorter --length or another task)")
    while t.step < o.steps:
        t0 = time.monotonic()
        idx = [order[(t.step * o.batch + i) % len(order)] for i in range(o.batch)]
        mine = [(k, problems[idx[k]]) for k in dp.share(list(range(o.batch)))]
        batch = rollouts(model, mine, twin.gates(), o, t.step)
        rewards = torch.tensor([r for _, _, r in batch], dtype=torch.float64)
        n_total = dp.sum_float(len(batch))
        r_sum, r_sq = dp.sum_float(float(rewards.sum())), dp.sum_float(float((rewards ** 2).sum()))
        r_mean = r_sum / n_total
        r_std = max(r_sq / n_total - r_mean ** 2, 0.0) ** 0.5
        adv = advantages(rewards, o.group, r_std) if len(batch) else rewards
        # Per problem, its answers with a non-zero advantage (the others add
        # nothing to the surrogate's gradient): (prompt, answers, advantages).
        groups = []
        for j in range(0, len(batch), o.group):
            kept = [(ans, float(a)) for (_, ans, _), a in zip(batch[j:j + o.group], adv[j:j + o.group])
                    if ans and a != 0.0]
            if kept:
                groups.append((batch[j][0].tokens, [a for a, _ in kept], [a for _, a in kept]))
        n_tokens = dp.sum_float(sum(len(ans) for _, ans, _ in batch))
        beta_eff = adaptive_beta(r_mean, o.beta, o.tau)
        old: List[Optional[List[torch.Tensor]]] = [None] * len(groups)  # log-probs of the sampling policy
        for _ in range(o.updates):
            twin.alpha.grad = torch.zeros_like(twin.alpha)
            for i, (prompt, answers, advs) in enumerate(groups):
                lps = twin.group_logprobs(prompt, answers)  # the prompt's layers once per group
                if old[i] is None:  # before the first update the twin's gates are the sampler's
                    old[i] = [lp.detach() for lp in lps]
                obj = sum(clipped_objective(lp, lo, a, o.clip).sum() for lp, lo, a in zip(lps, old[i], advs))
                (-obj / max(n_tokens, 1.0)).backward()
            dp.all_reduce_sum(twin.alpha.grad)
            (beta_eff * twin.alpha.abs().mean()).backward()
            torch.nn.utils.clip_grad_norm_([twin.alpha], o.grad_clip)
            t.opt.step()
            t.clamp()
        t.record(dict(reward=r_mean, beta=beta_eff, l1=float(np.abs(twin.gates()).mean()),
                      seconds=time.monotonic() - t0), ("reward", "l1"))
    return t.finish()
