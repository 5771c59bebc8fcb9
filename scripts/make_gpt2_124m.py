#!/usr/bin/env python3
"""Writes a GPT-2 124M-shaped GGUF with random weights, for speed benchmarks.

Shape of GPT-2 small: 12 layers, d_model 768, 12 heads, 1024 positions,
vocabulary 50257, weight matrices F16 (norms and biases F32, as converters
write them). The weights are random (transformers' own initialisation,
seeded) and the vocabulary is the 256 byte-level tokens plus <|endoftext|>,
padded with placeholder tokens: the model produces gibberish. It is a speed
shape only -- every matmul, the attention and the 50257-wide output have the
size and type of the real model, so prefill/decode timings match it.

    python scripts/make_gpt2_124m.py [--out PATH] [--seed N] [--force]

Default output: ~/.cache/kvforge/bench/gpt2-124m-random-f16.gguf
($XDG_CACHE_HOME/kvforge/... when set). Needs numpy, torch, transformers and
gguf (the test venv has them). Reuses the GGUF writer of the Python tests
(tests/python/gguf_fixtures.py).
"""
import argparse
import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from gguf_fixtures import random_gpt2, write_gpt2_gguf  # noqa: E402


def default_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "kvforge" / "bench" / "gpt2-124m-random-f16.gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=default_path())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rewrite the file if it exists")
    args = ap.parse_args()
    if args.out.exists() and not args.force:
        print(args.out)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model = random_gpt2(seed=args.seed, n_layer=12, n_embd=768, n_head=12, n_positions=1024,
                        vocab_size=50257, init_std=None)
    tmp = args.out.with_name(args.out.name + ".tmp")
    write_gpt2_gguf(tmp, model, np.float16, llama_cpp=True)  # loadable by both engines
    tmp.replace(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
