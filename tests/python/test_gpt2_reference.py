"""GPT-2 architecture: random weights written to GGUF, kvforge's logits
against Hugging Face GPT2LMHeadModel with the same weights.

Tolerances: with f32 weights and an f32 KV cache both engines do the same f32
math in a different summation order: |diff| <= 2e-5 (logits here span about
+-1.5; f32 rounding through 3 layers of width 64 gives ~1e-6, measured 7e-7,
while any real bug moves them by 1e-2 or more). With f16 weights HF gets the
same f16-rounded weights, and our default f16 KV cache rounds K/V to 11 bits
(relative 2^-11 ~ 5e-4 per element): |diff| <= 2e-3 (measured 2e-4). BF16
weights likewise (HF gets the same bf16-rounded weights; on AVX2 they run the
x8-packed BF16 kernel). On a CPU with AVX512_BF16 kvforge's BF16 matmuls
(vdpbf16ps) also round their input activations to bf16 (relative 2^-8, 8x the
f16 cache's rounding; measured 5e-3 against an unrounded reference), so there
the reference rounds the inputs of its matmuls to bf16 too (a forward pre-hook
on every module with a weight matrix) and kvforge runs an f32 cache: the same
arithmetic again up to summation order. The bound is 1e-3: each activation
whose f32 value lies within an ulp of a bf16 rounding boundary rounds the
other way in one engine (that element moves by 2^-8 of itself), and how many
do depends on the summation order (measured 2.4e-7 with plain rows, 9e-5 with
the packed kernel); a real bug moves logits by 1e-2. With the f16 cache the reference cannot
follow: the cache's 2^-11 perturbations flip such roundings everywhere
(measured 6e-3)."""
import json

import numpy as np
import pytest

from conftest import run_kvforge
from gguf_fixtures import random_gpt2, write_gpt2_gguf
from reference_models import kvforge_logits

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 3


@pytest.fixture(scope="module")
def hf_gpt2():
    return random_gpt2()


def _bf16_activations(kvforge_bin):
    """True when kvforge's BF16 matmuls run vdpbf16ps on bf16-rounded activations."""
    return "avx512bf16: yes" in run_kvforge(kvforge_bin, "sysinfo").stdout


def _round_matmul_inputs_to_bf16(model):
    import torch

    def pre_hook(module, args):
        return (args[0].bfloat16().float(),) + tuple(args[1:])

    for module in model.modules():
        w = getattr(module, "weight", None)
        if isinstance(w, torch.nn.Parameter) and w.dim() == 2 and not isinstance(module, torch.nn.Embedding):
            module.register_forward_pre_hook(pre_hook)


def _hf_logits(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("dtype,kv,tol", [(np.float32, "f32", 2e-5), (np.float16, "f16", 2e-3), ("bf16", "f16", 2e-3)],
                         ids=["f32", "f16", "bf16"])
def test_gpt2_logits_match_transformers(kvforge_bin, hf_gpt2, tmp_path, dtype, kv, tol):
    import torch
    path = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(path, hf_gpt2, dtype)
    ref_model = hf_gpt2
    if dtype != np.float32:  # the reference sees the same rounded weights
        ref_model = random_gpt2()
        with torch.no_grad():
            for name, p in ref_model.named_parameters():
                if p.dim() == 2:
                    p.copy_(p.half().float() if dtype == np.float16 else p.bfloat16().float())
        if dtype == "bf16" and _bf16_activations(kvforge_bin):
            _round_matmul_inputs_to_bf16(ref_model)
            kv, tol = "f32", 1e-3
    ref = _hf_logits(ref_model, IDS)
    ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv-type", kv)
    diff = np.abs(ref - ours)
    print(f"\n[gpt2 {dtype if dtype == 'bf16' else np.dtype(dtype).name}] max|diff|={diff.max():.2e} logit range={np.abs(ref).max():.1f}")
    assert np.abs(ref).max() > 1.0  # the comparison is not trivially between near-zero numbers
    assert diff.max() <= tol
    assert np.array_equal(ref.argmax(-1), ours.argmax(-1))


def test_gpt2_cached_equals_uncached(kvforge_bin, hf_gpt2, tmp_path):
    path = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(path, hf_gpt2, np.float16)
    runs = []
    for extra in ([], ["--no-cache"]):
        out = tmp_path / "run.json"
        run_kvforge(kvforge_bin, "run", "-m", path, "-p", "Hello, world", "-n", 100, "--temp", "0",
                    "--ignore-eos", "--json-out", out, *extra)
        runs.append(json.loads(out.read_text())["tokens"])
    assert len(runs[0]) == 100
    assert runs[0] == runs[1]


def test_gpt2_context_beyond_learned_positions_is_an_error(kvforge_bin, hf_gpt2, tmp_path):
    path = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(path, hf_gpt2, np.float32)
    r = run_kvforge(kvforge_bin, "run", "-m", path, "-p", "hi", "-c", "4096", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error:") and "learned positions" in r.stderr
