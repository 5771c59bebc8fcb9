"""Per-head mixed caches from the command line: gate files against numpy's
reading and selection rule, clear errors for bad files and specs, and the
SmolLM2 memory a mixed cache really saves."""
import json

import numpy as np
import pytest

from conftest import run_kvforge


def _selection_numpy(path, sparsity):
    """DuoAttention's sparsify_attention_heads on np.loadtxt + clip, with
    kvforge's documented deterministic tie-break noise 1e-6 * i / N."""
    a = np.clip(np.loadtxt(path, dtype=float, delimiter="\t"), 0, 1)
    a = np.atleast_2d(a)
    n = a.size
    noisy = a + 1e-6 * np.arange(n).reshape(a.shape) / n
    t = np.quantile(noisy, sparsity)
    if sparsity >= 1:
        t = 2
    if sparsity <= 0:
        t = -1
    return (noisy >= t).astype(int)


def _show(kvforge_bin, path, sparsity):
    r = run_kvforge(kvforge_bin, "heads", "show", path, "--sparsity", sparsity)
    rows = r.stdout.strip().splitlines()[2:]
    return np.array([[int(x) for x in row.split("\t")] for row in rows])


@pytest.mark.parametrize("case", ["random", "ties", "clipped"])
def test_selection_matches_numpy(kvforge_bin, tmp_path, case):
    rng = np.random.default_rng(7)
    if case == "random":
        gates = rng.uniform(0, 1, (30, 3))
    elif case == "ties":  # a fresh gate file is all ones; a few levels repeated
        gates = rng.choice([0.0, 0.5, 1.0], (12, 4))
    else:  # trained gates slightly outside [0, 1]
        gates = rng.uniform(-0.05, 1.05, (8, 8))
    path = tmp_path / "adapter_weights.tsv"
    np.savetxt(path, gates, delimiter="\t")
    for s in (0.0, 0.1, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0):
        np.testing.assert_array_equal(_show(kvforge_bin, path, s), _selection_numpy(path, s), err_msg=f"s={s}")


def test_random_gate_file_is_what_numpy_reads(kvforge_bin, smollm2_gguf, tmp_path):
    path = tmp_path / "full_attention_heads.tsv"
    run_kvforge(kvforge_bin, "heads", "random", "-m", smollm2_gguf, "--seed", 3, "-o", path)
    a = np.loadtxt(path, delimiter="\t")
    assert a.shape == (30, 3) and (a >= 0).all() and (a < 1).all()
    assert len(np.unique(a)) == 90
    np.testing.assert_array_equal(_show(kvforge_bin, path, 0.5), _selection_numpy(path, 0.5))
    assert _show(kvforge_bin, path, 0.5).sum() == 45


@pytest.mark.parametrize("text, kv_tail, message", [
    ("0.1\t0.2\t0.3\n0.4\t0.5\n", ",sparsity:0.5", "line 2: 2 values, but line 1 has 3"),
    ("0.1\tx\t0.3\n", ",sparsity:0.5", "'x' is not a number"),
    ("0.1\t0.2\t0.3\n", ",sparsity:0.5", "1 rows x 3 columns, but this model has 30 layers x 3 KV heads"),
    ("0.1\t0.2\t0.3\n", ",sparsity:1.5", "sparsity must be in [0, 1]"),
    ("0.1\t0.2\t0.3\n", "", "needs sparsity"),
])
def test_bad_gate_files_and_specs_give_one_error(kvforge_bin, smollm2_gguf, tmp_path, text, kv_tail, message):
    path = tmp_path / "g.tsv"
    path.write_text(text)
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "Hi", "-n", 1, "--kv", f"heads:{path}{kv_tail}",
                    check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def test_mixed_cache_saves_memory_and_generates(kvforge_bin, smollm2_gguf, tmp_path):
    # 8192 tokens of context at sparsity 0.5: 45 full heads x 8192 + 45 x 80 cells of 256 bytes.
    out = tmp_path / "run.json"
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "The capital of France is", "-n", 8,
                    "--temp", 0, "-c", 8192, "--kv", "heads:random:1,sparsity:0.5", "--json-out", out)
    j = json.loads(out.read_text())
    assert j["kv_bytes"] == 45 * 8192 * 256 + 45 * 80 * 256, j
    assert len(j["tokens"]) == 8 and j["kv_policy"].startswith("mixed: 45 of 90 heads streaming")
