"""RLKV's pieces on the engine: soft gates set from Python (against the twin),
the verifiable tasks and head-pattern files bound from C++, and
`heads train --method rlkv` (self-distillation, GRPO step, files)."""
import numpy as np
import pytest
import torch

import kvforge
from kvforge import _core
from kvforge.twin import Twin
from test_heads_train import gates, train
from tiny_llama import write_tiny_llama

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 2


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(write_tiny_llama(tmp_path_factory.mktemp("rlkv") / "tiny.gguf", seed=7, n_ctx=512))


def test_engine_soft_gates_match_the_twin(tiny_path):
    """Tolerance as test_twin.py's f32 comparisons (1e-4)."""
    model = kvforge.Model.load(tiny_path)
    alpha = np.random.default_rng(0).uniform(size=(2, 2))
    ctx = kvforge.Context(model, n_ctx=64, kv="full+f32")
    plain = ctx.eval(IDS, all_logits=True)
    ctx.reset()
    ctx.set_gates(np.ones((2, 2)), 4, 8)
    assert np.array_equal(ctx.eval(IDS, all_logits=True), plain)  # gate 1 is the plain head, bit for bit
    ctx.reset()
    ctx.set_gates(alpha, 4, 8)
    ours = ctx.eval(IDS, all_logits=True)
    twin = Twin.from_gguf(tiny_path, sinks=4, recent=8)
    twin.set_gates(alpha)
    with torch.no_grad():
        ref = twin(torch.tensor([IDS]))[0].numpy()
    assert np.abs(ours - plain).max() > 1e-2
    assert np.abs(ours - ref).max() <= 1e-4
    with pytest.raises(kvforge.Error, match=r"gates of shape \[3, 2\]"):
        ctx.set_gates(np.ones((3, 2)), 4, 8)


def test_tasks_and_gate_files(smollm2_gguf, tmp_path):
    model = kvforge.Model.load(str(smollm2_gguf))
    assert "passkey" in _core.task_names()
    c = _core.task_case(model, "passkey", 1, 256, 0)
    assert len(c.tokens) <= 256 and c.expected.isdigit()
    assert _core.task_answer_correct(f"The pass key is {c.expected}.", c.expected)
    assert not _core.task_answer_correct("I do not know.", c.expected)
    with pytest.raises(kvforge.Error, match="unknown task"):
        _core.task_case(model, "nonsense", 1, 256, 0)
    a = np.random.default_rng(1).uniform(-0.1, 1.1, size=(30, 3))
    path = str(tmp_path / "adapter_weights.tsv")
    _core.write_head_gates(path, a)
    np.testing.assert_array_equal(np.loadtxt(path, delimiter="\t"), a)  # the research code's reader
    np.testing.assert_array_equal(_core.read_head_gates(path), np.clip(a, 0, 1))


def test_rlkv_without_solvable_problems_is_one_clear_error(tiny_path, tmp_path):
    r = train("--method", "rlkv", "-m", tiny_path, "-o", tmp_path / "r", "--length", "320", "--pool", "2", "-q",
              check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: self-distillation kept no problem")
    r = train("--method", "rlkv", "-m", tiny_path, "-o", tmp_path / "r", "--task", "nonsense", "-q", check=False)
    assert r.returncode == 1 and "unknown task 'nonsense'" in r.stderr


def test_rlkv_step_on_smollm2(smollm2_gguf, tmp_path):
    """One GRPO step on the real model: problems it solves, rewards logged,
    gates written in [0, 1] and moved by the step."""
    out = tmp_path / "rlkv"
    r = train("--method", "rlkv", "-m", smollm2_gguf, "-o", out, "--length", "128", "--pool", "2", "--batch", "1",
              "--group", "2", "--max-new", "6", "--steps", "1", "--sinks", "4", "--recent", "16", "-q")
    assert r.stdout.strip() == str(out / "adapter_weights.tsv")
    a = gates(out, "adapter_weights.tsv")
    assert a.shape == (30, 3) and np.all((a >= 0) & (a <= 1)) and not np.all(a == 1.0)
    log = (out / "train_log.jsonl").read_text()
    assert '"reward"' in log
