"""Llama-family variants with random weights: RoPE over adjacent pairs
(llama GGUFs, Q/K rows permuted by the converter), RoPE over halves (Qwen2,
not permuted), QKV biases (Qwen2), tied vs separate output, GQA. kvforge's
logits are compared with transformers on the very same f32 weights.

Tolerance: with f32 weights and an f32 KV cache both sides do f32 math in a
different order; logits here span about +-3 and f32 rounding through 2
layers of width 64 is ~1e-6: |diff| <= 2e-5. A wrong RoPE pairing, bias or
head grouping changes logits by 1e-1 or more."""
import pytest

from gguf_fixtures import random_llama_like, write_llama_like_gguf
from reference_models import assert_logits_close, kvforge_logits

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 4


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_logits_match_transformers(kvforge_bin, tmp_path, kind):
    import torch
    model = random_llama_like(kind)
    path = tmp_path / f"{kind}.gguf"
    write_llama_like_gguf(path, model, kind)
    with torch.no_grad():
        ref = model(torch.tensor([IDS])).logits[0].numpy()
    ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv-type", "f32")
    assert_logits_close(kind, ref, ours, 2e-5)
