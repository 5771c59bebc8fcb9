"""What the gate trainers (DuoAttention, RLKV) share: the run directory
(gates, history, checkpoints), data parallelism over torch.distributed, and
the progress line. Gates are written as the research code writes them:
np.savetxt(path, alpha, delimiter="\\t"), one row per layer, one column per
KV head."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import numpy as np
import torch


def write_gates(path: str, alpha: np.ndarray) -> None:
    from . import _core
    _core.write_head_gates(path, np.ascontiguousarray(alpha, dtype=np.float64))


class DataParallel:
    """torch.distributed when started by torchrun (WORLD_SIZE > 1): gloo on
    CPUs, NCCL with GPUs. Each rank takes the items i with i % world == rank of
    a global batch; gradients are summed over ranks."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)

    def share(self, items: list) -> list:
        return items[self.rank::self.world]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def sum_float(self, x: float) -> float:
        return float(self.all_reduce_sum(torch.tensor([x], dtype=torch.float64))[0])

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class RunDir:
    """out/: the gates file, alpha_history.npy [steps + 1][n_layer][n_kv_head],
    train_log.jsonl (one line per step) and checkpoint.pt (resume)."""

    def __init__(self, path: str, gates_name: str):
        self.path = path
        self.gates_name = gates_name
        os.makedirs(path, exist_ok=True)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def save_checkpoint(self, state: dict) -> None:
        tmp = self.file("checkpoint.pt.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.file("checkpoint.pt"))

    def load_checkpoint(self) -> Optional[dict]:
        p = self.file("checkpoint.pt")
        return torch.load(p, weights_only=False) if os.path.exists(p) else None

    def write_results(self, alpha: np.ndarray, history: list, log: list) -> None:
        write_gates(self.file(self.gates_name), alpha)
        np.save(self.file("alpha_history.npy"), np.stack(history))
        with open(self.file("train_log.jsonl"), "w") as f:
            for row in log:
                f.write(json.dumps(row) + "\n")


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.t0 = total, enabled, time.monotonic()
        self.tty = sys.stderr.isatty()

    def update(self, step: int, **fields) -> None:
        if not self.enabled:
            return
        width = 24
        done = int(width * step / max(self.total, 1))
        bar = "#" * done + "-" * (width - done)
        items = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        line = f"[{bar}] {step}/{self.total} {items}"
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


class GateTraining:
    """One training run of the gates: the engine's model, the twin, the
    optimizer over alpha (every gate starting at `init`), the run directory
    (resumed from its checkpoint), the step counter, history, log and
    progress line. `extra` holds what a method adds to its checkpoints."""

    def __init__(self, o, gates_name: str, optimizer: type, init: float = 1.0):
        from . import _core
        from .twin import Twin
        if not 0.0 <= init <= 1.0:
            raise ValueError(f"the initial gate must be in [0, 1] (got {init})")
        self.o = o
        self.dp = DataParallel()
        torch.manual_seed(o.seed)
        torch.set_num_threads(o.threads)
        self.model = _core.Model.load(o.model)
        self.twin = Twin.from_gguf(o.model, sinks=o.sinks, recent=o.recent)
        self.twin.set_gates(np.full(self.twin.alpha.shape, init))
        self.opt = optimizer([self.twin.alpha], lr=o.lr)
        self.run = RunDir(o.out, gates_name)
        self.step, self.history, self.log, self.extra = 0, [self.twin.gates()], [], {}
        ck = self.run.load_checkpoint()
        if ck is not None:
            self.twin.set_gates(ck["alpha"])
            self.opt.load_state_dict(ck["optimizer"])
            self.step, self.history, self.log, self.extra = ck["step"], ck["history"], ck["log"], ck["extra"]
        self.bar = Progress(o.steps, o.progress and self.dp.main)

    def clamp(self) -> None:
        with torch.no_grad():
            self.twin.alpha.clamp_(0.0, 1.0)

    def record(self, row: dict, shown: tuple) -> None:
        """Ends a step: history, log line, progress (the `shown` fields) and,
        every checkpoint_every steps and at the end, a checkpoint."""
        self.step += 1
        g = self.twin.gates()
        row = dict(step=self.step, **row, sparsity=float(np.mean(g < 0.5)))
        self.history.append(g)
        self.log.append(row)
        self.bar.update(self.step, **{k: row[k] for k in shown + ("sparsity", "seconds")})
        if self.dp.main and (self.step % self.o.checkpoint_every == 0 or self.step == self.o.steps):
            self.run.save_checkpoint(dict(alpha=g, optimizer=self.opt.state_dict(), step=self.step,
                                          history=self.history, log=self.log, extra=self.extra))

    def finish(self) -> np.ndarray:
        self.bar.close()
        if self.dp.main:
            self.run.write_results(self.twin.gates(), self.history, self.log)
        self.dp.close()
        return self.twin.gates()
