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
from .trainer import DataParallel, Progress, RunDir
from .twin import Twin


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
    dp = DataParallel()
    torch.manual_seed(o.seed)
    model = _core.Model.load(o.model)
    twin = Twin.from_gguf(o.model, sinks=o.sinks, recent=o.recent)
    opt = torch.optim.AdamW([twin.alpha], lr=o.lr)
    run = RunDir(o.out, "full_attention_heads.tsv")
    step, history, log = 0, [twin.gates()], []
    ck = run.load_checkpoint()
    if ck is not None:
        twin.set_gates(ck["alpha"])
        opt.load_state_dict(ck["optimizer"])
        step, history, log = ck["step"], ck["history"], ck["log"]
    bar = Progress(o.steps, o.progress and dp.main)
    while step < o.steps:
        t0 = time.monotonic()
        batch = [duo_sample(model, o.seed, step * o.batch + i, o.length) for i in range(o.batch)]
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
        opt.step()
        with torch.no_grad():
            twin.alpha.clamp_(0.0, 1.0)
        step += 1
        mse_mean = dp.sum_float(mse_sum) / o.batch
        row = dict(step=step, mse=mse_mean, l1=l1.item(), sparsity=float(np.mean(twin.gates() < 0.5)),
                   seconds=time.monotonic() - t0)
        history.append(twin.gates())
        log.append(row)
        bar.update(step, mse=row["mse"], l1=row["l1"], sparsity=row["sparsity"], s_per_step=row["seconds"])
        if dp.main and (step % o.checkpoint_every == 0 or step == o.steps):
            run.save_checkpoint(dict(alpha=twin.gates(), optimizer=opt.state_dict(), step=step,
                                     history=history, log=log))
    bar.close()
    if dp.main:
        run.write_results(twin.gates(), history, log)
    dp.close()
    return twin.gates()
