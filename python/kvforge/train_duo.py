"""DuoAttention's objective on the twin (`kvforge heads train --method duo`):
passkey-retrieval prompts with their answers; the loss is the MSE between the
full model's and the mixed model's final hidden states on the answer
positions plus lam * mean|alpha|, minimised with AdamW; alpha is clamped to
[0, 1] after every step. Writes full_attention_heads.tsv."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from . import _core
from .trainer import GateTraining


@dataclass
class DuoOptions:
    model: str
    out: str
    steps: int = 100
    batch: int = 4          # samples per step (global, over all ranks)
    lr: float = 0.02
    lam: float = 0.05       # weight of mean|alpha|
    length: int = 512       # prompt length in tokens
    sinks: int = 16         # training stream: sinks + recent
    recent: int = 64
    seed: int = 0
    checkpoint_every: int = 10
    threads: int = 1          # PyTorch's and the engine's (more than one is slower on a busy machine)
    progress: bool = True


def duo_sample(model: _core.Model, seed: int, index: int, length: int):
    """(tokens, first answer position): a passkey case (depth drawn from the
    seed) followed by its answer " KEY." The loss positions are those that
    predict the answer tokens."""
    rng = np.random.default_rng([seed, index])
    case = _core.needle_case(model, seed, length, float(rng.uniform(0.0, 1.0)), index)
    answer = model.tokenize(f" {case.key}.", add_bos=False)
    return case.tokens + answer, len(case.tokens) - 1


def train_duo(o: DuoOptions) -> np.ndarray:
    t = GateTraining(o, "full_attention_heads.tsv", torch.optim.AdamW)
    twin, dp = t.twin, t.dp
    while t.step < o.steps:
        t0 = time.monotonic()
        batch = [duo_sample(t.model, o.seed, t.step * o.batch + i, o.length) for i in range(o.batch)]
        twin.alpha.grad = torch.zeros_like(twin.alpha)  # a rank with no sample still all-reduces
        mse_sum = 0.0
        for tokens, first in dp.share(batch):
            ids = torch.tensor([tokens])
            with torch.no_grad():
                saved = twin.alpha.detach().clone()
                twin.alpha.fill_(1.0)
                target = twin.hidden(ids)[0, first:]
                twin.alpha.copy_(saved)
            mse = torch.mean((twin.hidden(ids)[0, first:] - target) ** 2)
            (mse / o.batch).backward()  # the global batch's mean, summed over ranks
            mse_sum += mse.item()
        dp.all_reduce_sum(twin.alpha.grad)
        l1 = twin.alpha.abs().mean()  # of the gates before this step
        (o.lam * l1).backward()
        t.opt.step()
        t.clamp()
        t.record(dict(mse=dp.sum_float(mse_sum) / o.batch, l1=l1.item(), seconds=time.monotonic() - t0),
                 ("mse", "l1"))
    return t.finish()
