"""kvforge's logits on the real SmolLM2-135M Q4_1 GGUF against two references.

Both kvforge and llama.cpp multiply the Q4_1/Q8_0 weights with activations
quantized to 8-bit blocks per matmul (the fast path every quantized CPU engine
takes), while Hugging Face transformers dequantizes the weights to f32 and
keeps f32 activations. Measured on this model, llama.cpp itself differs from
transformers by max |diff| ~1.0-1.4 and mean |diff| ~0.15-0.3 (logits span
about +-30), purely from that activation rounding through 30 layers. So:

- against transformers we require kvforge to be as accurate as llama.cpp is:
  mean |diff| <= 1.25 x llama.cpp's mean |diff| + 0.02, max |diff| <= 2.5,
  and top-1 agreement >= 95% of positions;
- against llama.cpp (same quantization scheme, different summation order and
  rounding details such as fp16 vs f32 block scales) max |diff| <= 2.5,
  mean |diff| <= 0.3, top-1 agreement >= 97%.
A real bug (a wrong RoPE pairing, a mis-read scale, an off-by-one position)
moves logits by whole units on average and flips most top-1 tokens.
The measured values are printed (pytest -s).
"""
import numpy as np
import pytest

from reference_models import hf_logits, kvforge_logits, kvforge_tokenize, llama_cpp_logits

PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWhat is a KV cache?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "In 1969, Neil Armstrong became the first person to walk on the Moon. He said:",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
]


@pytest.fixture(scope="module")
def cases(kvforge_bin, smollm2_gguf, tmp_path_factory):
    out = []
    for i, prompt in enumerate(PROMPTS):
        ids = kvforge_tokenize(kvforge_bin, smollm2_gguf, prompt)
        ours = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path_factory.mktemp(f"p{i}"))
        lc = llama_cpp_logits(smollm2_gguf, ids)
        hf = hf_logits(smollm2_gguf, ids)
        out.append((prompt, ours, lc, hf))
    return out


def _stats(name, a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = np.abs(a - b)
    top1 = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    print(f"\n[{name}] positions={a.shape[0]} max|diff|={diff.max():.4f} mean|diff|={diff.mean():.5f} top1={top1:.3f}")
    return float(diff.max()), float(diff.mean()), top1


def test_logits_match_llama_cpp(cases):
    top1s = []
    for prompt, ours, lc, _ in cases:
        mx, mean, top1 = _stats("kvforge vs llama.cpp", ours, lc)
        assert mx <= 2.5 and mean <= 0.3, prompt
        top1s.append(top1)
    assert np.mean(top1s) >= 0.97


def test_logits_match_transformers_as_well_as_llama_cpp(cases):
    top1s = []
    for prompt, ours, lc, hf in cases:
        mx, mean, top1 = _stats("kvforge vs transformers", ours, hf)
        _, peer_mean, _ = _stats("llama.cpp vs transformers", lc, hf)
        assert mx <= 2.5, prompt
        assert mean <= 1.25 * peer_mean + 0.02, prompt
        top1s.append(top1)
    assert np.mean(top1s) >= 0.95
