"""`kvforge heads eval` end to end on the default model: one table, JSON and
plots; every compared policy at the same KV bytes as the head-mixed cache of
its sparsity (exact accounting); sparsity 0 is the full cache (same answers);
a gate file that does not fit the model is one error line."""
import json

import numpy as np

from conftest import run_kvforge

# SmolLM2-135M: 30 layers x 3 KV heads, K and V rows of 64 f16 values.
N_HEADS, ROW_BYTES = 90, 2 * 64 * 2
SINKS, RECENT = 16, 64


def test_heads_eval_table_json_and_plots(kvforge_bin, smollm2_gguf, tmp_path):
    gates = tmp_path / "gates.tsv"
    np.savetxt(gates, np.random.default_rng(5).uniform(size=(30, 3)), delimiter="\t")
    out = tmp_path / "he"
    r = run_kvforge(kvforge_bin, "heads", "eval", "-m", smollm2_gguf, "--gates", gates, "--tasks", "passkey",
                    "--lengths", "256", "--trials", "1", "--sparsity", "0,0.5", "--seeds", "1", "--speed-depth", "512", "--speed-steps", "2", "-o", out)
    res = json.loads((out / "heads-eval.json").read_text())
    rows = res["rows"]
    length = res["length_for_bytes"]
    assert length == 256

    def bytes_at(s):  # the accounting of README: full heads hold the text, streaming ones sinks + recent
        n_stream = round(s * N_HEADS)
        return ((N_HEADS - n_stream) * length + n_stream * (SINKS + RECENT)) * ROW_BYTES

    by = {(row["method"], row["sparsity"]): row for row in rows}
    assert by[("full", 0.0)]["kv_bytes"] == bytes_at(0)
    methods = {row["method"] for row in rows}
    assert {"full", "gates.tsv", "random", "window", "h2o", "snapkv"} <= methods, methods
    for row in rows:
        if row["sparsity"] == 0.5:
            # Every baseline is compared at the mixed cache's memory.
            assert row["kv_bytes"] == bytes_at(0.5), row
        assert 0 <= row["mean"] <= 1 and len(row["task_accuracy"]) == 1
    # Decode speed at --speed-depth: the full cache and one measurement per
    # sparsity shared by the mixed rows, with the bytes held at that depth.
    assert res["speed_depth"] == 512
    for key in (("full", 0.0), ("gates.tsv", 0.5), ("random", 0.5)):
        assert by[key]["decode_tps"] > 0, key
    assert by[("full", 0.0)]["speed_kv_bytes"] == N_HEADS * 512 * ROW_BYTES
    assert by[("gates.tsv", 0.5)]["speed_kv_bytes"] == (45 * 512 + 45 * (SINKS + RECENT)) * ROW_BYTES
    assert by[("random", 0.5)]["decode_tps"] == by[("gates.tsv", 0.5)]["decode_tps"]
    assert by[("h2o", 0.5)]["decode_tps"] == 0 and by[("window", 0.5)]["speed_kv_bytes"] == 0
    # Sparsity 0 streams no head: the very cache of `full`, the same answers.
    assert by[("gates.tsv", 0.0)]["task_accuracy"] == by[("full", 0.0)]["task_accuracy"]
    assert by[("full", 0.0)]["mean"] == 1.0  # the default model finds a pass key at 256 tokens

    table = (out / "heads-eval.md").read_text()
    assert "| method " in table and "| h2o " in table and "| snapkv " in table
    assert "decode tok/s @512" in table
    assert r.stdout.strip() in table  # stdout: the table of the Markdown file
    for png in ("heads-eval.png", "gates-gates.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_heads_eval_rejects_a_gate_file_of_another_model(kvforge_bin, smollm2_gguf, tmp_path):
    gates = tmp_path / "small.tsv"
    np.savetxt(gates, np.ones((2, 3)), delimiter="\t")
    r = run_kvforge(kvforge_bin, "heads", "eval", "-m", smollm2_gguf, "--gates", gates, "--tasks", "passkey",
                    "--lengths", "256", "--trials", "1", "-o", tmp_path / "he", check=False)
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2" in errors[0] and "30" in errors[0], r.stderr
