"""RLKV's pieces on the engine: soft gates set from Python (against the twin),
the verifiable tasks and head-pattern files bound from C++, and
`heads train --method rlkv`: GRPO learning the one gate a toy task needs,
files, determinism and resume on a tiny random model, one step on the real
model."""
import json

import numpy as np
import pytest
import torch

import kvforge
from kvforge import _core
from kvforge.tasks import Problem, make_problems
from kvforge.train_rlkv import RlkvOptions, train_rlkv
from kvforge.twin import Twin
from test_heads_train import gates, train
from tiny_llama import write_tiny_llama

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 2
NEEDED = (1, 0)  # the toy model's only KV head with an output; the other three are muted


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """As the trainer runs (its --threads): OpenMP threads crawl on a busy machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


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
    # A list of tasks is taken in turn: problem i is trial i of task i % len(list).
    mixed = make_problems(model, "passkey,copy", 1, 3, 256)
    assert [p.expected for p in mixed] == [c.expected, _core.task_case(model, "copy", 1, 256, 1).expected,
                                           _core.task_case(model, "passkey", 1, 256, 2).expected]
    with pytest.raises(ValueError, match="unknown task 'nonsense'"):
        make_problems(model, "passkey,nonsense", 1, 3, 256)
    a = np.random.default_rng(1).uniform(-0.1, 1.1, size=(30, 3))
    path = str(tmp_path / "adapter_weights.tsv")
    _core.write_head_gates(path, a)
    np.testing.assert_array_equal(np.loadtxt(path, delimiter="\t"), a)  # the research code's reader
    np.testing.assert_array_equal(_core.read_head_gates(path), np.clip(a, 0, 1))


def test_rlkv_without_solvable_problems_is_one_clear_error(tiny_path, tmp_path):
    r = train("--method", "rlkv", "-m", tiny_path, "-o", tmp_path / "r", "--length", "320", "--pool", "2", "--max-new", "4", "-q",
              check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: self-distillation kept no problem")
    r = train("--method", "rlkv", "-m", tiny_path, "-o", tmp_path / "r", "--task", "nonsense", "-q", check=False)
    assert r.returncode == 1 and "unknown task 'nonsense'" in r.stderr
    r = train("--method", "rlkv", "-m", tiny_path, "-o", tmp_path / "r", "--init", "1.5", "-q", check=False)
    assert r.returncode == 1 and r.stderr == "error: the initial gate must be in [0, 1] (got 1.5)\n"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A tiny model where only KV head NEEDED reaches the output, and two
    prompts (printable bytes, longer than the 2 + 4 tokens of the training
    stream) whose verifier accepts a first answer character whose logit that
    head's full attention raises (full vs streaming, the other gates at 1):
    the expected reward grows with its gate and nothing depends on the others.
    Kept: prompts whose full-cache greedy answer passes (self-distillation)."""
    path = str(write_tiny_llama(tmp_path_factory.mktemp("toy") / "toy.gguf", seed=3, n_ctx=256,
                                mute=[(0, 0), (0, 1), (1, 1)]))
    model = kvforge.Model.load(path)
    ctx = kvforge.Context(model, n_ctx=64)
    rng = np.random.default_rng(0)

    def logits(prompt, gate):
        alpha = np.ones((2, 2))
        alpha[NEEDED] = gate
        ctx.reset()
        ctx.set_gates(alpha, 2, 4)
        return ctx.eval(prompt)

    problems = []
    while len(problems) < 2:
        prompt = [int(t) for t in rng.integers(32, 127, 40)]
        full = logits(prompt, 1.0)
        raised = {chr(t) for t in range(32, 127) if full[t] > logits(prompt, 0.0)[t]}
        if chr(int(np.argmax(full))) in raised:
            problems.append(Problem(prompt, lambda answer, ok=raised: answer[:1] in ok))
    return path, problems


def toy_options(path, out, **kw):
    o = dict(model=path, out=str(out), batch=2, group=8, max_new=1, sinks=2, recent=4, tau=0.0, init=0.5,
             seed=0, progress=False)
    return RlkvOptions(**{**o, **kw})


def test_grpo_opens_the_needed_gate_and_l1_closes_the_rest(toy, tmp_path):
    """The optimum is known: the needed gate at 1, the muted ones at 0. From
    0.5, GRPO must raise the needed gate (its expected reward rises with it,
    by about 0.1 from 0.5 to 1), and the L1 term (tau = 0: always on) must
    lower the others: they get no other gradient, so Adam moves them by about
    lr = 0.01 per step."""
    path, problems = toy
    a = train_rlkv(toy_options(path, tmp_path, steps=20), problems)
    others = np.delete(a.ravel(), np.ravel_multi_index(NEEDED, a.shape))
    assert a[NEEDED] > 0.6, a
    assert np.all(others < 0.35) and np.all(others == others[0]), a  # the same L1 push on each muted gate
    hist = np.load(tmp_path / "alpha_history.npy")
    assert hist.shape == (21, 2, 2) and np.all(hist[0] == 0.5) and np.array_equal(hist[-1], a)


def test_rlkv_files_determinism_and_resume(toy, tmp_path):
    """Separate runs with one seed give the same gates, and a run resumed from
    its checkpoint equals an uninterrupted one (sampling seeds depend on the
    step, the curriculum is checkpointed)."""
    path, problems = toy
    whole = train_rlkv(toy_options(path, tmp_path / "whole", steps=3, seed=4), problems)
    train_rlkv(toy_options(path, tmp_path / "split", steps=1, seed=4, checkpoint_every=1), problems)
    split = train_rlkv(toy_options(path, tmp_path / "split", steps=3, seed=4, checkpoint_every=1), problems)
    assert np.array_equal(split, whole) and not np.all(whole == 0.5)
    assert np.array_equal(gates(tmp_path / "split", "adapter_weights.tsv"), whole)
    assert np.array_equal(np.load(tmp_path / "split" / "alpha_history.npy"),
                          np.load(tmp_path / "whole" / "alpha_history.npy"))
    log = [json.loads(line) for line in (tmp_path / "whole" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(set(r) >= {"reward", "beta", "l1", "sparsity", "seconds"} and 0 <= r["reward"] <= 1 for r in log)


def test_rlkv_step_on_smollm2(smollm2_gguf, tmp_path):
    """One GRPO step on the real model, as small as it gets (one problem the
    model solves, G = 2, 6 answer tokens: the pass key): gates written in [0, 1], moved by
    the step, reward logged."""
    out = tmp_path / "rlkv"
    r = train("--method", "rlkv", "-m", smollm2_gguf, "-o", out, "--length", "128", "--pool", "1", "--batch", "1",
              "--group", "2", "--max-new", "6", "--steps", "1", "--sinks", "4", "--recent", "16", "-q")
    assert r.stdout.strip() == str(out / "adapter_weights.tsv")
    a = gates(out, "adapter_weights.tsv")
    assert a.shape == (30, 3) and np.all((a >= 0) & (a <= 1)) and not np.all(a == 1.0)
    row = json.loads((out / "train_log.jsonl").read_text())
    assert 0 <= row["reward"] <= 1
