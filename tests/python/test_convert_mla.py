"""kvforge convert-mla on tiny random llama and qwen2 models
(gguf_fixtures.py: GQA, 4 query heads over 2 KV heads of 16 dims; qwen2 with
Q/K/V biases and RoPE over halves).

Full rank with every rope dim kept (--kv-dim 32 = 2 KV heads x 16 value
dims, --rope-dims 16) must compute the original model's logits: the
factorisation is exact in f64 (U orthogonal, U U^T M = M), and what differs is
f32 rounding of the stored factors (--proj-type f32) and of the absorbed
products (q . U_g (U^T [W|b] x) summed in another order): |diff| <= 1e-4
(logits span about +-3; a wrong RoPE pair, query row order or bias moves
them by 1e-1 or more). With the default f16 factors each weight is rounded
to 11 significant bits (relative 2^-12): |diff| <= 1e-2, still ten times
below what a wrong pair or row order costs (measured: 3.7e-3). Reduced conversions run on the latent cache with the engine's
exactness contract (cache on/off, batch split), and bad input gives one
clear error."""
import json

import numpy as np
import pytest

from conftest import run_kvforge
from gguf_fixtures import random_gpt2, random_llama_like, write_gpt2_gguf, write_llama_like_gguf
from reference_models import assert_logits_close, kvforge_logits

IDS = [(i * 37 + 11) % 256 for i in range(40)]
CALIB = ("It was a bright cold day in April, and the clocks were striking thirteen. " * 8)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    d = tmp_path_factory.mktemp("convert_mla")
    (d / "calib.txt").write_text(CALIB)
    paths = {}
    for kind in ("llama", "qwen2"):
        paths[kind] = d / f"{kind}.gguf"
        write_llama_like_gguf(paths[kind], random_llama_like(kind), kind)
    return d, paths


def convert(kvforge_bin, originals, kind, out, *args, check=True):
    d, paths = originals
    return run_kvforge(kvforge_bin, "convert-mla", "-m", paths[kind], "-o", out, "--calib", d / "calib.txt", *args,
                       check=check)


@pytest.mark.parametrize("kind,method,choice,proj", [("llama", "activation", "high", "f32"), ("llama", "svd", "norm", "f32"),
                                                     ("qwen2", "activation", "norm", "f32"), ("qwen2", "svd", "high", "f32"),
                                                     ("llama", "activation", "high", "f16")])
def test_full_rank_reproduces_the_original(kvforge_bin, originals, tmp_path, kind, method, choice, proj):
    out = tmp_path / "mla.gguf"
    r = convert(kvforge_bin, originals, kind, out, "--kv-dim", 32, "--rope-dims", 16, "--method", method,
                "--rope-choice", choice, "--proj-type", proj)
    assert "64 cached values per token and layer instead of 64" in r.stderr
    ref = kvforge_logits(kvforge_bin, originals[1][kind], IDS, tmp_path, "--kv-type", "f32")
    ours = kvforge_logits(kvforge_bin, out, IDS, tmp_path, "--kv-type", "f32")
    assert_logits_close(f"{kind} {method} {choice} {proj}", ref, ours, 1e-4 if proj == "f32" else 1e-2)
    meta = json.loads(run_kvforge(kvforge_bin, "inspect", "--json", out).stdout)["metadata"]
    keys = {k: v["value"] for k, v in meta.items()}
    assert keys["kvforge.mla.kv_lora_rank"] == 32 and keys["kvforge.mla.method"] == method
    calibrated = method == "activation" or choice == "norm"
    assert keys["kvforge.mla.rope_choice"] == choice and (keys["kvforge.mla.calib_tokens"] > 64) == calibrated


@pytest.mark.parametrize("kind,dim", [("llama", 16), ("qwen2", 12)])
def test_reduced_conversion_runs_exactly_on_the_latent_cache(kvforge_bin, originals, tmp_path, kind, dim):
    """--kv-dim D --rope-dims 4: rows of D + 2 x 4 values instead of
    2 x (16 + 16) = 64 (2 layers, f16: 4 (D + 8) bytes per token; D = 16
    takes the SIMD attention kernels, 12 the scalar ones). The logits move (a
    low-rank model), but cache on/off and any batch split stay bit-identical."""
    out = tmp_path / "mla.gguf"
    convert(kvforge_bin, originals, kind, out, "--kv-dim", dim, "--rope-dims", 4)
    ref = kvforge_logits(kvforge_bin, originals[1][kind], IDS, tmp_path)
    whole = kvforge_logits(kvforge_bin, out, IDS, tmp_path)
    split = kvforge_logits(kvforge_bin, out, IDS, tmp_path, "-b", 7)
    assert np.array_equal(whole, split)
    assert np.abs(whole - ref).max() > 1e-3
    runs, errs = [], []
    for extra in ([], ["--no-cache"]):
        j = tmp_path / "run.json"
        r = run_kvforge(kvforge_bin, "run", "-m", out, "-p", "Hello", "-n", 24, "--temp", 0, "--ignore-eos",
                        "--json-out", j, *extra)
        runs.append(json.loads(j.read_text()))
        errs.append(r.stderr)
    assert runs[0]["tokens"] == runs[1]["tokens"] and len(runs[0]["tokens"]) == 24
    assert runs[0]["kv_bytes_per_token"] == 4 * (dim + 8) and "latent" in errs[0]


@pytest.mark.parametrize("args,expect", [
    (["--kv-dim", 33, "--rope-dims", 16], "--kv-dim 33: must be in [1, 32]"),
    (["--kv-dim", 8, "--rope-dims", 5], "--rope-dims 5: must be even"),
    (["--kv-dim", 8, "--rope-dims", 18], "--rope-dims 18: must be even and in [2, 16]"),
])
def test_impossible_ranks_give_one_clear_error(kvforge_bin, originals, tmp_path, args, expect):
    out = tmp_path / "x.gguf"
    r = convert(kvforge_bin, originals, "llama", out, *args, check=False)
    assert r.returncode == 1 and not out.exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr


def test_unsupported_input_gives_one_clear_error(kvforge_bin, originals, tmp_path):
    d, paths = originals
    mla = tmp_path / "mla.gguf"
    convert(kvforge_bin, originals, "llama", mla, "--kv-dim", 8, "--rope-dims", 4)
    short = tmp_path / "short.txt"
    short.write_text("Hi.")
    gpt2 = tmp_path / "gpt2.gguf"
    write_gpt2_gguf(gpt2, random_gpt2(), np.float32)
    cases = [
        (["-m", gpt2, "-o", tmp_path / "x.gguf", "--kv-dim", 8, "--rope-dims", 4], "architecture is 'gpt2'"),
        (["-m", mla, "-o", tmp_path / "x.gguf", "--kv-dim", 8, "--rope-dims", 4], "already caches a latent"),
        (["-m", paths["llama"], "-o", tmp_path / "x.gguf", "--kv-dim", 8, "--rope-dims", 4, "--calib", short],
         "at least 64 are needed"),
        (["-m", paths["llama"], "-o", paths["llama"], "--kv-dim", 8, "--rope-dims", 4], "would overwrite the input"),
    ]
    for args, expect in cases:
        r = run_kvforge(kvforge_bin, "convert-mla", *args, check=False)
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr


@pytest.mark.parametrize("dim", [16, 12])
def test_q8_latent_of_any_width(kvforge_bin, originals, tmp_path, dim):
    """q8 rows are 32-element blocks; a converted latent of D + 2 x 4 = 24 or
    20 values (V: the first D) is stored padded with zeros to one block of 32
    (34 bytes per row and layer, counted). Against the unquantized f32 latent
    (the naive reference: the same rows without rounding) the logits move by
    the q8 step only, as much as for a latent of whole blocks: measured
    0.12 / 0.16 for D = 16 / 12 on logits spanning about +-5, and 0.115 for
    the unpadded 32 + 2 x 16 (f16 rows: 4e-3; this random model's attention
    is sharp, so the 1/254 relative step of q8 shows). A misplaced pad, V
    offset or block scrambles the attention and moves them by O(1); limit
    0.3. Cache on/off and batch split stay bit-identical."""
    out = tmp_path / "mla.gguf"
    convert(kvforge_bin, originals, "llama", out, "--kv-dim", dim, "--rope-dims", 4)
    ref = kvforge_logits(kvforge_bin, out, IDS, tmp_path, "--kv", "f32")
    q8 = kvforge_logits(kvforge_bin, out, IDS, tmp_path, "--kv", "q8")
    split = kvforge_logits(kvforge_bin, out, IDS, tmp_path, "--kv", "q8", "-b", 7)
    assert np.array_equal(q8, split)
    diff = np.abs(q8 - ref).max()
    print(f"\n[q8 latent D={dim}] max|diff|={diff:.2e} logit range={np.abs(ref).max():.2f}")
    assert np.abs(ref).max() > 1.0 and 0 < diff <= 0.3  # really quantized, within the q8 step
    assert (q8.argmax(-1) == ref.argmax(-1)).mean() >= 0.9  # near-ties may flip
    runs = []
    for extra in ([], ["--no-cache"]):
        j = tmp_path / "run.json"
        run_kvforge(kvforge_bin, "run", "-m", out, "-p", "Hello", "-n", 24, "--temp", 0, "--ignore-eos", "--kv", "q8",
                    "--json-out", j, *extra)
        runs.append(json.loads(j.read_text()))
    assert runs[0]["tokens"] == runs[1]["tokens"] and len(runs[0]["tokens"]) == 24
    assert runs[0]["kv_bytes_per_token"] == 2 * 34
