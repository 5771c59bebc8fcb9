#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/*.cpp).

Small valid GGUF files made with the pinned `gguf` package: every metadata
value type (strings, arrays of numbers and of strings, floats, bools) and
tensors of the types the reader decodes (F32, F16, Q8_0, Q4_1, Q4_K) and a
deepseek2-shaped file (MLA and MoE keys, 3-D tensors), so the
fuzzer starts from inputs that reach deep into the reader; and a few texts
and KV-policy specs for the tokenizer and --kv parser targets.

    scripts/make_fuzz_seeds.py DIR        (run with the test venv's Python)
"""
import pathlib
import sys

import gguf
import numpy as np


def write(path, tensors, raw=()):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("general.name", "fuzz seed")
    w.add_uint32("seed.u32", 7)
    w.add_int64("seed.i64", -3)
    w.add_float32("seed.f32", 1.5)
    w.add_bool("seed.bool", True)
    w.add_array("seed.ints", [1, 2, 3])
    w.add_array("seed.strs", ["a", "bc"])
    for name, a in tensors:
        w.add_tensor(name, a)
    for name, a, qtype in raw:
        w.add_tensor(name, a, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_deepseek2(path, rng):
    """The metadata and tensor shapes of a one-layer MLA + MoE deepseek2 file
    (3-D per-head and per-expert tensors), tiny widths."""
    w = gguf.GGUFWriter(str(path), "deepseek2")
    w.add_block_count(1)
    w.add_embedding_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_kv_lora_rank(32)
    w.add_q_lora_rank(0)
    w.add_key_length(64)
    w.add_value_length(32)
    w.add_key_length_mla(48)
    w.add_value_length_mla(16)
    w.add_rope_dimension_count(32)
    w.add_expert_count(4)
    w.add_expert_used_count(2)
    w.add_expert_feed_forward_length(32)
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID)
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(4.0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    w.add_tensor("blk.0.attn_kv_a_mqa.weight", f32(64, 32))
    w.add_tensor("blk.0.attn_k_b.weight", f32(2, 32, 16))
    w.add_tensor("blk.0.attn_v_b.weight", f32(2, 16, 32))
    w.add_tensor("blk.0.ffn_gate_exps.weight", f32(4, 32, 32).astype(np.float16))
    w.add_tensor("blk.0.exp_probs_b.bias", f32(4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_fuzz_seeds.py DIR")
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Q = gguf.GGMLQuantizationType
    write(out / "f32.gguf", [("t0", np.ones((4, 32), np.float32))])
    write(out / "f16.gguf", [("t0", np.arange(64, dtype=np.float16).reshape(2, 32)), ("t1", np.zeros(8, np.float32))])
    # Quantized tensors as raw blocks: bytes per row = blocks x block size.
    write(out / "quant.gguf", [], raw=[
        ("q8_0", rng.integers(0, 255, size=(2, 34), dtype=np.uint8), Q.Q8_0),
        ("q4_1", rng.integers(0, 255, size=(1, 20), dtype=np.uint8), Q.Q4_1),
        ("q4_k", rng.integers(0, 255, size=(1, 144), dtype=np.uint8), Q.Q4_K),
    ])
    write_deepseek2(out / "deepseek2.gguf", rng)
    # Text for the tokenizer and policy specs for the --kv parser (every
    # target starts from the whole directory).
    texts = {
        "text_en.txt": "Hello, world! It's 2026 -- don't panic.\n\tIndented   spaces",
        "text_code.txt": "def f(x):\n    return x ** 2  # square\n",
        "text_unicode.txt": "naïve café 日本語 한국어 🦙🚀 \u200b zero-width",
        "text_special.txt": "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
        "kv_window.txt": "window:1024,sinks:4+q8,hadamard",
        "kv_full.txt": "full+f32",
        "openai_chat.json": '{"model": "m", "messages": [{"role": "system", "content": "Be brief."}, '
                            '{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 8, '
                            '"temperature": 0.5, "top_p": 0.9, "stop": ["\\n", "END"], "logprobs": true, '
                            '"top_logprobs": 2, "n": 2, "stream": true, "stream_options": {"include_usage": true}, '
                            '"seed": 7}',
        "openai_completion.json": '{"prompt": [1, 2, 3], "max_tokens": null, "logprobs": 3, "top_k": 40, '
                                  '"min_p": 0.05, "ignore_eos": true, "echo": false}',
    }
    for name, t in texts.items():
        (out / name).write_text(t, encoding="utf-8")
    print(f"fuzz seeds written to {out}")


if __name__ == "__main__":
    main()
