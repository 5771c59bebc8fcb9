"""The gate files shipped for the default model (gates/SmolLM2-135M-Instruct/,
learned by the README's default runs of `kvforge heads train`) load as the
research code loads them (np.loadtxt, tab-separated), fit the model (30
layers x 3 KV heads), hold learned gates in [0, 1] (not the untrained
initial values), come with their training history, and serve with
`--kv heads:FILE,sparsity:0.5` (half of the 90 heads streaming)."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_kvforge

GATES = Path(__file__).resolve().parents[2] / "gates" / "SmolLM2-135M-Instruct"
N_LAYER, N_KV_HEAD = 30, 3


@pytest.mark.parametrize("run,name", [("rlkv", "adapter_weights.tsv"), ("duo", "full_attention_heads.tsv")])
def test_shipped_gates_load_and_serve(kvforge_bin, smollm2_gguf, run, name):
    path = GATES / run / name
    alpha = np.loadtxt(path, delimiter="\t")
    assert alpha.shape == (N_LAYER, N_KV_HEAD)
    assert np.all(np.isfinite(alpha)) and alpha.min() >= 0.0 and alpha.max() <= 1.0
    assert alpha.max() - alpha.min() > 0.1, "the gates did not spread: not a trained file"

    # The history the training-curve plot is drawn from: alpha after every step, one log line per step.
    history = np.load(GATES / run / "alpha_history.npy")
    log = [json.loads(line) for line in (GATES / run / "train_log.jsonl").read_text().splitlines()]
    assert history.shape == (len(log) + 1, N_LAYER, N_KV_HEAD)
    np.testing.assert_allclose(history[-1], alpha, atol=1e-12)

    shown = run_kvforge(kvforge_bin, "heads", "show", path, "--sparsity", "0.5").stdout
    assert "45 of 90 heads full, 45 streaming" in shown, shown
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "--kv", f"heads:{path},sparsity:0.5", "-p", "Hi",
                    "-n", "2", "--temp", "0", "-t", "1")
    assert r.returncode == 0
