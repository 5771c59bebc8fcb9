"""`kvforge serve` with latent (MLA) caches, one row per token and layer in
the paged blocks: a tiny random DeepSeek-V2 (deepseek_fixtures.py) with q8
rows, and a tiny random llama turned into an MLA model by `kvforge
convert-mla` (rows of 16 + 2 x 8 values) with f16 rows. Greedy tokens of
concurrent requests equal those of each request alone and of `kvforge run`;
a request that shares a ~300-token prefix with an earlier one (diverging
inside the second block: copy-on-write) reuses its blocks and gives the text
it gives on a fresh server; every block returns to the pool. Every server
listens on 127.0.0.1 on a free port; every wait is bounded."""
import concurrent.futures

import pytest

from conftest import run_kvforge
from deepseek_fixtures import random_deepseek, write_deepseek2_gguf
from gguf_fixtures import random_llama_like, write_llama_like_gguf
from test_serve import N_CTX, Server, greedy

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time", "Water boils at"]
SYSTEM = "You are a careful assistant. " + " ".join(f"Rule {i}: be brief." for i in range(20))
N_GEN = 12


@pytest.fixture(scope="module")
def mla_models(kvforge_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("serve_mla")
    write_deepseek2_gguf(d / "deepseek2.gguf", random_deepseek(2))
    write_llama_like_gguf(d / "llama.gguf", random_llama_like("llama"), "llama")
    (d / "calib.txt").write_text("It was a bright cold day in April, and the clocks were striking thirteen. " * 4)
    run_kvforge(kvforge_bin, "convert-mla", "-m", d / "llama.gguf", "-o", d / "converted.gguf", "--kv-dim", 16,
                "--rope-dims", 8, "--method", "svd", "--calib", d / "calib.txt")
    return {"deepseek2": (d / "deepseek2.gguf", "q8"), "converted": (d / "converted.gguf", "f16")}


def _run(kvforge_bin, model, prompt, kv):
    return run_kvforge(kvforge_bin, "run", "-m", model, "-p", prompt, "--temp", "0", "-n", N_GEN, "--ignore-eos",
                       "-c", N_CTX, "-t", "2", "--kv", kv).stdout


@pytest.mark.parametrize("kind", ["deepseek2", "converted"])
def test_latent_cache_batched_equals_solo_and_run(kvforge_bin, mla_models, kind):
    model, kv = mla_models[kind]
    prefixed = [SYSTEM + "\nQ: What is 2+2?\nA:", SYSTEM + "\nQ: Name a color.\nA:"]
    s = Server(kvforge_bin, model, "--parallel", 4, "--kv", kv)
    try:
        c = s.client()
        solo = [greedy(c, p, n=N_GEN, ignore_eos=True) for p in PROMPTS]
        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as ex:
            batched = list(ex.map(lambda p: greedy(c, p, n=N_GEN, ignore_eos=True), PROMPTS))
        assert batched == solo
        assert solo[0] + "\n" == _run(kvforge_bin, model, PROMPTS[0], kv)
        texts = []
        for p in prefixed:
            r = c.completions.create(model="m", prompt=p, max_tokens=N_GEN, temperature=0,
                                     extra_body={"ignore_eos": True})
            texts.append(r.choices[0].text)
        assert r.usage.prompt_tokens > 256 and r.usage.prompt_tokens_details.cached_tokens > 256
        assert s.metrics()["kv_copy_on_write_total"] >= 1
        assert s.wait_idle()["kv_blocks_used"] == 0
    finally:
        assert s.stop() == 0, s.proc.stderr.read()
    fresh = Server(kvforge_bin, model, "--parallel", 4, "--kv", kv)
    try:
        assert greedy(fresh.client(), prefixed[1], n=N_GEN, ignore_eos=True) == texts[1]
    finally:
        assert fresh.stop() == 0, fresh.proc.stderr.read()
