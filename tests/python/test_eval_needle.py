"""`kvforge eval needle` on the real model: deterministic cases, and the full
cache retrieves the pass key at 512 tokens (the baseline that makes the
losses of evicting policies visible)."""
import json

import pytest

from conftest import run_kvforge

# Measured with seed 42 at 512 tokens: see README (full cache: 6/6 here). Margin: one miss.
MIN_FULL_ACCURACY_512 = 0.8


@pytest.fixture(scope="module")
def full_512(kvforge_bin, smollm2_gguf, tmp_path_factory):
    out = tmp_path_factory.mktemp("needle") / "needle.json"
    r = run_kvforge(kvforge_bin, "eval", "needle", "-m", smollm2_gguf, "--kv", "full", "--lengths", 512,
                    "--depths", "0.1,0.5,0.9", "--trials", 2, "--seed", 42, "--json-out", out)
    return r, json.loads(out.read_text())


def test_table_and_json(full_512):
    r, j = full_512
    assert "| length |" in r.stdout and "depth 0.50" in r.stdout and "overall:" in r.stdout
    assert j["total"] == 6 and len(j["cells"]) == 3 and len(j["trials"]) == 6
    for t in j["trials"]:
        assert len(t["key"]) == 5 and t["n_prompt"] <= 512
        assert t["correct"] == (t["key"] in t["answer"])
    assert len({t["key"] for t in j["trials"]}) >= 5


def test_full_cache_retrieves_the_key_at_512(full_512):
    _, j = full_512
    print("full @512 accuracy:", j["accuracy"], [(t["key"], t["answer"]) for t in j["trials"]])
    assert j["accuracy"] >= MIN_FULL_ACCURACY_512


def test_same_seed_same_cases(kvforge_bin, smollm2_gguf, full_512, tmp_path):
    _, j = full_512
    out = tmp_path / "again.json"
    run_kvforge(kvforge_bin, "eval", "needle", "-m", smollm2_gguf, "--lengths", 512, "--depths", "0.1",
                "--trials", 1, "--seed", 42, "--json-out", out)
    again = json.loads(out.read_text())
    first = [t for t in j["trials"] if t["depth"] == 0.1][:1]
    assert [(t["key"], t["answer"], t["n_prompt"]) for t in again["trials"]] == \
        [(t["key"], t["answer"], t["n_prompt"]) for t in first]


def test_bad_flags(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "eval", "needle", "-m", smollm2_gguf, "--depths", "1.5", check=False)
    assert r.returncode == 1 and "--depths" in r.stderr
    r = run_kvforge(kvforge_bin, "eval", "needle", "-m", smollm2_gguf, "--lengths", "20", check=False)
    assert r.returncode == 1 and "too short" in r.stderr
