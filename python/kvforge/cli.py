"""The Python side of the kvforge command line: `python -m kvforge heads
train ...`, also reached as `kvforge heads train ...` (the C++ CLI hands the
subcommand over). Errors print one `error: ...` line and exit with status 1."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional


def _heads_train(args: argparse.Namespace) -> None:
    if not os.path.isfile(args.model):
        raise ValueError(f"model file {args.model} not found")
    if args.steps <= 0 or args.batch <= 0 or args.threads <= 0:
        raise ValueError("--steps, --batch and --threads must be positive")
    common = dict(model=args.model, out=args.out, steps=args.steps, batch=args.batch, length=args.length,
                  sinks=args.sinks, recent=args.recent, seed=args.seed, checkpoint_every=args.checkpoint_every,
                  threads=args.threads, progress=not args.quiet)
    if args.method == "duo":
        from .train_duo import DuoOptions, train_duo
        train_duo(DuoOptions(lr=args.lr if args.lr is not None else 0.02, lam=args.lam, **common))
        print(os.path.join(args.out, "full_attention_heads.tsv"))
    else:
        from .train_rlkv import RlkvOptions, train_rlkv
        train_rlkv(RlkvOptions(lr=args.lr if args.lr is not None else 1e-2, task=args.task, group=args.group,
                               beta=args.beta, tau=args.tau, clip=args.clip, grad_clip=args.grad_clip,
                               updates=args.updates, max_new=args.max_new, pool=args.pool, init=args.init,
                               **common))
        print(os.path.join(args.out, "adapter_weights.tsv"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kvforge", description="kvforge's Python commands")
    sub = p.add_subparsers(dest="command", required=True)
    heads = sub.add_parser("heads", help="per-head KV cache gates").add_subparsers(dest="heads_command", required=True)
    t = heads.add_parser("train", help="learn a gate alpha per (layer, KV head) (needs the [train] extra: torch, gguf)",
                         description="Learns which KV heads need the full cache; writes the gates as tab-separated "
                                     "values (one row per layer, one column per KV head) into --out. Resumes from "
                                     "--out/checkpoint.pt when present.")
    t.add_argument("--method", choices=["duo", "rlkv"], required=True,
                   help="duo: DuoAttention distillation (full_attention_heads.tsv); "
                        "rlkv: GRPO on verifiable rewards (adapter_weights.tsv)")
    t.add_argument("-m", "--model", required=True, help="GGUF model file")
    t.add_argument("-o", "--out", required=True, help="output directory (gates, alpha_history.npy, train_log.jsonl)")
    t.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    t.add_argument("--batch", type=int, default=4, help="prompts per step over all ranks (default 4)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (duo: AdamW 0.02; rlkv: Adam 0.01)")
    t.add_argument("--lam", type=float, default=0.05, help="duo: weight of mean|alpha| (default 0.05)")
    t.add_argument("--length", type=int, default=512, help="prompt length in tokens (default 512)")
    t.add_argument("--sinks", type=int, default=16, help="training stream: first tokens kept (default 16)")
    t.add_argument("--recent", type=int, default=64, help="training stream: last tokens kept (default 64)")
    t.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")
    r = t.add_argument_group("rlkv")
    r.add_argument("--task", default="passkey",
                   help="a task of `kvforge eval tasks`, a comma-separated list of them (taken in turn) or a GSM8K-format .jsonl file (default passkey)")
    r.add_argument("--group", type=int, default=4, help="G answers sampled per prompt (default 4)")
    r.add_argument("--beta", type=float, default=2.5e-3, help="L1 weight beta (default 2.5e-3)")
    r.add_argument("--tau", type=float, default=0.5, help="reward threshold of the L1 term (default 0.5)")
    r.add_argument("--clip", type=float, default=0.2, help="PPO ratio clip (default 0.2)")
    r.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip (default 1.0)")
    r.add_argument("--updates", type=int, default=1, help="optimizer steps per batch of samples (default 1)")
    r.add_argument("--max-new", type=int, default=16, help="answer tokens (default 16)")
    r.add_argument("--pool", type=int, default=64, help="candidate problems for self-distillation (default 64)")
    r.add_argument("--init", type=float, default=1.0, help="every gate's starting value in [0, 1] (default 1: full)")
    t.add_argument("--checkpoint-every", type=int, default=10, help="steps between checkpoints (default 10)")
    t.add_argument("--threads", type=int, default=1,
                   help="threads of PyTorch and the engine (default 1; more are slower on a busy machine)")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    t.set_defaults(func=_heads_train)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except ImportError as e:
        print(f"error: {e.name or e} is not installed; install the training extra: pip install './[train]'",
              file=sys.stderr)
        return 1
    except (ValueError, RuntimeError, OSError) as e:  # kvforge.Error and TwinError included
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
