"""Token eviction (--kv h2o:B / snapkv:B) on the real SmolLM2-135M through
the CLI: with room for the whole text it is the full cache, past its budget it
keeps generating in B tokens per head, and bad budgets are clear errors.
(Which tokens each keeps is tested against slow references in
tests/unit/test_kv_evict.cpp.)"""
import json

import pytest

from conftest import run_kvforge
from test_bad_input import _assert_clean_error

PROMPT = "The history of the printing press begins"
F16_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2  # 23,040: 30 layers, 3 KV heads of 64, K and V, f16


def _greedy(kvforge_bin, model, tmp_path, n, *extra):
    out = tmp_path / "run.json"
    run_kvforge(kvforge_bin, "run", "-m", model, "-p", PROMPT, "-n", n, "--temp", "0", "--ignore-eos",
                "--json-out", out, *extra, timeout=600)
    return json.loads(out.read_text())


def test_budget_with_room_for_the_text_equals_full(kvforge_bin, smollm2_gguf, tmp_path):
    full = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 24)
    for kv in ("h2o:48", "snapkv:48,window:8"):
        assert _greedy(kvforge_bin, smollm2_gguf, tmp_path, 24, "--kv", kv)["tokens"] == full["tokens"], kv


@pytest.mark.parametrize("kv", ["h2o:32,recent:8", "snapkv:32,window:8,pool:3+q8"])
def test_generates_past_the_budget_in_budget_memory(kvforge_bin, smollm2_gguf, tmp_path, kv):
    r = _greedy(kvforge_bin, smollm2_gguf, tmp_path, 60, "-c", "128", "--kv", kv)
    assert r["stop_reason"] == "length" and len(r["tokens"]) == 60
    per_token = r["kv_bytes_per_token"]
    assert per_token == (F16_BYTES_PER_TOKEN if "q8" not in kv else 12240)
    assert r["kv_bytes_used"] == 32 * per_token  # the budget, all of it in use
    # H2O owns exactly its budget; SnapKV has cells for the context to read a prompt in.
    assert r["kv_bytes"] == (32 if kv.startswith("h2o") else 128) * per_token


@pytest.mark.parametrize("args, needle", [
    (["-c", "128", "--kv", "h2o:200"], "exceeds the context size"),
    (["--kv", "snapkv:16,window:16"], "window:16 must be below the budget"),
    (["--kv", "h2o:64,recent:64"], "recent:64 must be below the budget"),
    (["--kv", "h2o:64+window:8"], "already given"),
])
def test_bad_budgets_are_clear_errors(kvforge_bin, smollm2_gguf, args, needle):
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "hi", "-n", "1", *args, check=False)
    _assert_clean_error(r, needle)
