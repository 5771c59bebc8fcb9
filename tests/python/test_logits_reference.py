"""kvforge's logits on the real SmolLM2-135M Q4_1 GGUF against two references.

Tolerances, and why:
- llama.cpp runs the same quantized weights with the same scheme (activations
  quantized to 8-bit blocks per matmul, f16 KV cache), so the only differences
  are summation order and small rounding choices (e.g. llama.cpp stores the
  activation block scale in fp16, we keep f32). Logits of this model span about
  +-30; we require max |diff| <= 0.35 and top-1 agreement >= 97% of positions.
- Hugging Face transformers dequantizes the weights to f32 and multiplies
  them with f32 activations: it does not quantize activations (our 8-bit
  activation blocks add a relative error of about 1/254 per element per matmul,
  through 30 layers). We require max |diff| <= 1.5, mean |diff| <= 0.15 and
  top-1 agreement >= 95%.
The measured values are printed (pytest -s) so drift is visible.
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
        out.append((prompt, ids, ours))
    return out


def _compare(name, ref, ours):
    assert ref.shape == ours.shape, (ref.shape, ours.shape)
    diff = np.abs(ref - ours)
    top1 = float(np.mean(ref.argmax(-1) == ours.argmax(-1)))
    print(f"\n[{name}] positions={ref.shape[0]} max|diff|={diff.max():.4f} mean|diff|={diff.mean():.5f} top1={top1:.3f}")
    return diff, top1


def test_logits_match_llama_cpp(cases, smollm2_gguf):
    all_top1 = []
    for prompt, ids, ours in cases:
        ref = llama_cpp_logits(smollm2_gguf, ids)
        diff, top1 = _compare("llama.cpp", ref, ours)
        assert diff.max() <= 0.35, prompt
        all_top1.append(top1)
    assert np.mean(all_top1) >= 0.97


def test_logits_match_transformers(cases, smollm2_gguf):
    all_top1 = []
    for prompt, ids, ours in cases:
        ref = hf_logits(smollm2_gguf, ids)
        diff, top1 = _compare("transformers", ref, ours)
        assert diff.max() <= 1.5, prompt
        assert diff.mean() <= 0.15, prompt
        all_top1.append(top1)
    assert np.mean(all_top1) >= 0.95
