#!/usr/bin/env python3
"""Writes a small DeepSeek-V2-style MoE GGUF ('deepseek2') with random
weights, for speed benchmarks against llama.cpp.

Shape (--shape small, the default): the kind of DeepSeek-V2-Lite (MLA with
kv_lora 512, rope 64, nope 128, v 128 and 16 heads, no q_lora; the first
layer dense, the others 6-of-N routed experts plus 2 shared ones, softmax
gating) at a size this machine holds: hidden 1024, 8 layers, 32 experts of
width 704, dense width 5632, vocabulary 32000 -- about 0.66 B parameters,
0.16 B active per token. --shape lite is V2-Lite itself (hidden 2048, 27
layers, 64 experts of width 1408, vocabulary 102400: 15.7 B parameters, over
60 GB of RAM to build; for a bigger machine). Matrices are F16 (norms and the
router F32); requantize with `scripts/bench_vs_llamacpp.py --variants q8_0`.
The weights are random and the vocabulary placeholder tokens: the model
produces gibberish, but every matmul, the latent attention and the experts
have the shape of the real kind, so prefill/decode timings match it.

    python scripts/make_deepseek2_moe.py [--shape small|lite] [--out PATH] [--seed N] [--force]

Default output: ~/.cache/kvforge/bench/deepseek2-moe-SHAPE-random-f16.gguf.
Needs numpy, torch, transformers and gguf (the test venv); reuses the
deepseek2 writer of the Python tests (tests/python/deepseek_fixtures.py).
"""
import argparse
import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))
from deepseek_fixtures import random_deepseek, write_deepseek2_gguf  # noqa: E402

MLA = dict(num_attention_heads=16, num_key_value_heads=16, q_lora_rank=None, kv_lora_rank=512, qk_rope_head_dim=64,
           qk_nope_head_dim=128, v_head_dim=128, n_shared_experts=2, num_experts_per_tok=6,
           max_position_embeddings=16384)
SHAPES = {
    "small": dict(MLA, hidden_size=1024, num_hidden_layers=8, n_routed_experts=32, moe_intermediate_size=704,
                  intermediate_size=5632, vocab_size=32000),
    "lite": dict(MLA, hidden_size=2048, num_hidden_layers=27, n_routed_experts=64, moe_intermediate_size=1408,
                 intermediate_size=10944, vocab_size=102400),
}


def default_path(shape):
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "kvforge" / "bench" / f"deepseek2-moe-{shape}-random-f16.gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--out", type=pathlib.Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rewrite the file if it exists")
    args = ap.parse_args()
    out = args.out or default_path(args.shape)
    if out.exists() and not args.force:
        print(out)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    model = random_deepseek(2, seed=args.seed, q_lora=False, n_dense=1, shape=SHAPES[args.shape])
    tmp = out.with_name(out.name + ".tmp")
    write_deepseek2_gguf(tmp, model, dtype=np.float16)
    tmp.replace(out)
    print(out)


if __name__ == "__main__":
    main()
