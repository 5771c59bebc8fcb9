"""Loaders for the reference engines, shared by the reference tests.

HF transformers loads the GGUF itself (gguf_file=..., dequantized to float32);
llama.cpp comes from llama-cpp-python built on this machine. Both are cached
per test session because loading takes seconds.
"""
import functools
import json
import pathlib
import subprocess

import numpy as np

from conftest import run_kvforge


@functools.lru_cache(maxsize=None)
def hf_model(gguf_path: str):
    import torch
    from transformers import AutoModelForCausalLM
    p = pathlib.Path(gguf_path)
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, torch_dtype=torch.float32)
    model.eval()
    return model


def hf_logits(gguf_path, ids):
    import torch
    with torch.no_grad():
        out = hf_model(str(gguf_path))(torch.tensor([ids]))
    return out.logits[0].float().numpy()


@functools.lru_cache(maxsize=None)
def llama_cpp_model(gguf_path: str, n_ctx: int = 512):
    from llama_cpp import Llama
    return Llama(model_path=str(gguf_path), n_ctx=n_ctx, n_threads=2, logits_all=True, verbose=False,
                 n_batch=512)


def llama_cpp_logits(gguf_path, ids):
    llm = llama_cpp_model(str(gguf_path))
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def kvforge_logits(kvforge_bin, gguf_path, ids, tmp_path, *extra, global_args=()):
    """global_args go before the command (e.g. --simd avx2)."""
    out = tmp_path / "logits.npy"
    run_kvforge(kvforge_bin, *global_args, "logits", "-m", gguf_path, "--tokens", json.dumps(list(ids)), "-o", out,
                *extra)
    return np.load(out)


def kvforge_tokenize(kvforge_bin, gguf_path, text):
    r = run_kvforge(kvforge_bin, "tokenize", "-m", gguf_path, "-p", text)
    return json.loads(r.stdout)


def assert_logits_close(label, ref, ours, tol):
    """ours matches the reference logits within tol (max |diff|) with the same
    argmax everywhere; the reference must span more than +-1, else a test on
    near-zero logits would prove little. Prints the measured values."""
    diff = np.abs(ref - ours)
    print(f"\n[{label}] max|diff|={diff.max():.2e} logit range={np.abs(ref).max():.2f}")
    assert np.abs(ref).max() > 1.0
    assert diff.max() <= tol
    assert np.array_equal(ref.argmax(-1), ours.argmax(-1))
