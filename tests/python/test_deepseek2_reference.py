"""deepseek2 (MLA + MoE): tiny random DeepSeek-V2 and V3 models from
transformers, written to GGUF as llama.cpp's converter does
(deepseek_fixtures.py); kvforge's logits against transformers and llama.cpp
on the same file, the latent cache's exactness and bytes, and bad files.

Tolerances. Against transformers with f32 weights and an f32 latent cache
both sides do f32 math in different orders, and kvforge attends in the
absorbed form (q_nope through W_UK^T into the latent space, V = the latent,
W_UV after the sum) where transformers decompresses K and V per head: the
same products regrouped, so only rounding differs: |diff| <= 1e-4 (logits span
about +-5; measured <= 1.3e-5 over 3 layers; a wrong routing choice, RoPE pair
or scale moves logits by 1e-1 or more); kvforge's naive path (`--mla-attn naive`:
K and V decompressed per head, like transformers) is held to the same bound. Against llama.cpp with an f32 cache
too: |diff| <= 1e-3 (measured ~1e-5) and the same greedy tokens."""
import json

import numpy as np
import pytest

from conftest import run_kvforge
from deepseek_fixtures import hf_logits, random_deepseek, write_deepseek2_gguf
from reference_models import kvforge_logits

IDS = [(i * 37 + 11) % 300 for i in range(40)]

CONFIGS = {  # name: (version, q_lora, yarn, legacy attn_kv_b)
    "v3-qlora": (3, True, False, False),
    "v2-direct-q": (2, False, False, False),
    "v3-yarn": (3, False, True, False),
    "v2-qlora-yarn-legacy": (2, True, True, True),
}


@pytest.fixture(scope="module")
def models():
    return {name: random_deepseek(v, q_lora=q, yarn=y) for name, (v, q, y, _) in CONFIGS.items()}


def _write(models, name, tmp_path):
    path = tmp_path / f"{name}.gguf"
    write_deepseek2_gguf(path, models[name], legacy=CONFIGS[name][3])
    return path


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_transformers(kvforge_bin, models, tmp_path, name):
    path = _write(models, name, tmp_path)
    ref = hf_logits(models[name], IDS)
    assert np.abs(ref).max() > 1.0
    for path_kind in ("absorbed", "naive"):
        ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv-type", "f32", "--mla-attn", path_kind)
        diff = np.abs(ref - ours).max()
        print(f"\n[{name} {path_kind}] max|diff| vs transformers = {diff:.2e}, logit range {np.abs(ref).max():.1f}")
        assert diff <= 1e-4
        assert np.array_equal(ref.argmax(-1), ours.argmax(-1))


@pytest.mark.parametrize("name", ["v3-qlora", "v2-qlora-yarn-legacy"])
def test_same_file_in_llama_cpp(kvforge_bin, models, tmp_path, name):
    from llama_cpp import Llama
    path = _write(models, name, tmp_path)
    ours = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv-type", "f32")
    llm = Llama(model_path=str(path), n_ctx=128, logits_all=True, verbose=False, n_threads=2,
                type_k=0, type_v=0)  # GGML_TYPE_F32 caches, like --kv-type f32
    llm.eval(IDS)
    theirs = np.array(llm.scores[:len(IDS)])
    diff = np.abs(theirs - ours).max()
    print(f"\n[{name}] max|diff| vs llama.cpp = {diff:.2e}")
    assert diff <= 1e-3
    # Greedy continuation of the same prompt tokens.
    out = tmp_path / "run.json"
    run_kvforge(kvforge_bin, "run", "-m", path, "-p", "Hello, world", "-n", 16, "--temp", 0, "--ignore-eos",
                "--kv-type", "f32", "--json-out", out)
    run = json.loads(out.read_text())
    llm.reset()
    llm.eval(run["prompt_tokens"])
    greedy = []
    for _ in range(16):
        greedy.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([greedy[-1]])
    assert run["tokens"] == greedy


@pytest.mark.parametrize("kv", ["f16", "q8", "window:8,sinks:2+f16"])
def test_cache_on_off_and_batch_split_identical(kvforge_bin, models, tmp_path, kv):
    """The latent cache keeps the engine's exactness: cache on/off give the
    same tokens, and logits do not depend on the prefill batch size (bits)."""
    path = _write(models, "v3-qlora", tmp_path)
    runs = []
    for extra in ([], ["--no-cache"]):
        out = tmp_path / "run.json"
        run_kvforge(kvforge_bin, "run", "-m", path, "-p", "Hello, world", "-n", 40, "--temp", 0, "--ignore-eos",
                    "--kv", kv, "--json-out", out, *extra)
        runs.append(json.loads(out.read_text())["tokens"])
    assert len(runs[0]) == 40 and runs[0] == runs[1]
    whole = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv", kv)
    split = kvforge_logits(kvforge_bin, path, IDS, tmp_path, "--kv", kv, "-b", 7)
    assert np.array_equal(whole, split)


def test_latent_cache_bytes(kvforge_bin, models, tmp_path):
    """One row of d_c + R = 64 + 32 values per token and layer, 3 layers: 576
    bytes per token in f16 (per-head K/V would take 3 * 4 * (64 + 32) * 2 =
    2304), 306 in q8 (3 blocks of 34 bytes per row)."""
    path = _write(models, "v3-qlora", tmp_path)
    for kv, per_token in (("f16", 576), ("f32", 1152), ("q8", 306)):
        out = tmp_path / "run.json"
        r = run_kvforge(kvforge_bin, "run", "-m", path, "-p", "Hi", "-n", 2, "--kv", kv, "--json-out", out)
        j = json.loads(out.read_text())
        assert j["kv_bytes_per_token"] == per_token, (kv, j)
        assert "latent" in r.stderr


@pytest.mark.parametrize("drop,override,expect", [
    ({"deepseek2.attention.kv_lora_rank"}, None, "kv_lora_rank"),
    ({"blk.1.attn_k_b.weight"}, None, "attn_k_b"),
    ({"blk.2.ffn_up_exps.weight"}, None, "ffn_up_exps"),
    (set(), {"deepseek2.attention.key_length": 80}, "inconsistent MLA metadata"),
    (set(), {"deepseek2.expert_used_count": 9}, "invalid MoE shape"),
    (set(), {"deepseek2.rope.dimension_count": 70}, "invalid MLA shape"),
])
def test_bad_files_give_one_clear_error(kvforge_bin, models, tmp_path, drop, override, expect):
    bad = tmp_path / "bad.gguf"
    write_deepseek2_gguf(bad, models["v3-qlora"], drop=drop, override=override)
    r = run_kvforge(kvforge_bin, "logits", "-m", bad, "--tokens", "[1, 2]", "-o", tmp_path / "x.npy", check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr


@pytest.mark.parametrize("args,expect", [
    (["run", "-p", "Hi", "-n", 1, "--kv", "heads:random:1,sparsity:0.5"], "per-head mixed caches"),
    (["run", "-p", "Hi", "-n", 1, "--kv", "heads:full:0-0"], "per-head mixed caches"),
])
def test_unsupported_policies_refuse_mla(kvforge_bin, models, tmp_path, args, expect):
    """What cannot run a latent cache (per-head policies: all heads read the
    one latent row) says so in one line, before any work. (`serve` keeps
    latent rows in its paged blocks: test_serve_mla.py.)"""
    path = _write(models, "v2-direct-q", tmp_path)
    r = run_kvforge(kvforge_bin, args[0], "-m", path, *args[1:], check=False, timeout=60)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.stderr


def test_python_set_gates_refused_on_latent_cache(models, tmp_path):
    """Python's per-head soft gates (kvforge.set_gates) on an MLA model: every
    head reads the one latent row, so there is no per-head history to gate;
    refused with a clear kvforge.Error, and the context still works."""
    import kvforge
    path = _write(models, "v2-direct-q", tmp_path)
    model = kvforge.Model.load(str(path))
    ctx = kvforge.Context(model, n_ctx=64, n_threads=1)
    c = model.config
    with pytest.raises(kvforge.Error, match=r"latent \(MLA\) cache"):
        ctx.set_gates(np.full((c.n_layer, c.n_kv_head), 0.5, dtype=np.float32), 4, 8)
    assert ctx.eval(IDS[:5]).shape[-1] == c.n_vocab
