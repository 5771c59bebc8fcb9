"""The PyTorch twin (kvforge.twin) against the engine, and its gradient.

Tolerances:
- tiny random llama, f32 weights, f32 KV cache in the engine: both sides do
  f32 math in a different order (logits span about +-3): |diff| <= 1e-4,
  the bound test_llama_family_reference.py uses against transformers (2e-5)
  with room for the twin's own summation order. A wrong RoPE pairing, mask or
  gate broadcast moves logits by 1e-1 or more.
- SmolLM2-135M Q4_1: the engine multiplies with 8-bit activations and keeps
  an f16 cache, the twin computes in f32 on the dequantized weights, as
  transformers does; test_logits_reference.py measured llama.cpp (the same
  8-bit scheme) against transformers at max |diff| ~1.0-1.4 and mean
  ~0.15-0.3 on this model, so the same bounds hold here: max <= 2.5,
  mean <= 0.35, top-1 agreement >= 90 %.
- gradient: float64 twin, central differences with h = 1e-5 have error
  O(h^2) ~ 1e-10 relative to the second derivative, far below rtol 1e-6.
"""
import numpy as np
import pytest
import torch

import kvforge
from kvforge.twin import Twin, TwinError
from tiny_llama import write_tiny_llama

IDS = [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 33, 10, 256, 3, 200, 255, 0, 17] * 2


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(write_tiny_llama(tmp_path_factory.mktemp("twin") / "tiny.gguf", seed=3))


def engine_logits(path, ids, kv):
    model = kvforge.Model.load(path)
    return kvforge.Context(model, n_ctx=len(ids), kv=kv).eval(ids, all_logits=True)


def twin_logits(twin, ids):
    with torch.no_grad():
        return twin(torch.tensor([ids]))[0].numpy()


def test_full_gates_match_engine(tiny_path):
    twin = Twin.from_gguf(tiny_path)
    ours, ref = twin_logits(twin, IDS), engine_logits(tiny_path, IDS, "full+f32")
    assert np.abs(ref).max() > 1.0
    assert np.abs(ours - ref).max() <= 1e-4


def test_zero_gates_match_engine_window(tiny_path):
    twin = Twin.from_gguf(tiny_path, sinks=4, recent=8)
    twin.set_gates(np.zeros((2, 2)))
    ours = twin_logits(twin, IDS)
    ref = engine_logits(tiny_path, IDS, "window:8,sinks:4+f32")
    assert np.abs(ours - ref).max() <= 1e-4
    assert np.abs(ref - engine_logits(tiny_path, IDS, "full+f32")).max() > 1e-2  # the window matters here


def test_gates_matter_only_where_the_stream_forgets(tiny_path):
    """With a streaming history as long as the text, every gate gives the
    full model; with a short one, one KV head's gate changes the logits."""
    twin = Twin.from_gguf(tiny_path, sinks=0, recent=len(IDS))
    full = twin_logits(twin, IDS)
    twin.set_gates(np.random.default_rng(1).uniform(size=(2, 2)))
    assert np.abs(twin_logits(twin, IDS) - full).max() <= 1e-5
    twin.set_stream(2, 4)
    twin.set_gates(np.ones((2, 2)))
    assert np.abs(twin_logits(twin, IDS) - full).max() <= 1e-5
    a = np.ones((2, 2))
    a[1, 0] = 0.0
    twin.set_gates(a)
    changed = twin_logits(twin, IDS)
    assert np.abs(changed[:4] - full[:4]).max() <= 1e-5  # the first tokens are all in the stream
    assert np.abs(changed - full).max() > 1e-2


def test_gradient_matches_central_differences(tiny_path):
    twin = Twin.from_gguf(tiny_path, sinks=2, recent=4, dtype=torch.float64)
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0.2, 0.8, size=(2, 2))
    tokens = torch.tensor([IDS[:24], IDS[10:34]])

    def loss_at(a):
        twin.set_gates(a)
        return -twin.token_logprobs(tokens).sum()

    twin.zero_grad()
    loss = loss_at(alpha)
    loss.backward()
    grad = twin.alpha.grad.numpy().copy()
    h = 1e-5
    fd = np.zeros_like(alpha)
    with torch.no_grad():
        for idx in np.ndindex(*alpha.shape):
            up, down = alpha.copy(), alpha.copy()
            up[idx] += h
            down[idx] -= h
            fd[idx] = (loss_at(up).item() - loss_at(down).item()) / (2 * h)
    print(f"\ngrad={grad.ravel()} fd={fd.ravel()}")
    assert np.abs(grad).min() > 1e-3  # every gate matters for this loss
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
    assert [n for n, p in twin.named_parameters() if p.requires_grad] == ["alpha"]


def test_group_logprobs_equal_one_sequence_at_a_time(tiny_path):
    """The shared-prompt pass of a group (what RLKV's trainer recomputes)
    gives each answer's log-probs and alpha's gradient as the sequences do
    one by one: the same f64 math in another order (<= 1e-12), and the
    answers reach past the streaming window, so a wrong mask offset shows."""
    twin = Twin.from_gguf(tiny_path, sinks=2, recent=4, dtype=torch.float64)
    twin.set_gates(np.random.default_rng(2).uniform(0.2, 0.8, size=(2, 2)))
    prompt, answers = IDS[:17], [IDS[20:26], IDS[3:5], IDS[30:36], [7]]
    twin.zero_grad()
    group = twin.group_logprobs(prompt, answers)
    sum(lp.sum() * (i + 1) for i, lp in enumerate(group)).backward()
    grad = twin.alpha.grad.clone()
    twin.zero_grad()
    one = [twin.token_logprobs(torch.tensor([prompt + a]), len(prompt) - 1)[0] for a in answers]
    sum(lp.sum() * (i + 1) for i, lp in enumerate(one)).backward()
    assert [len(lp) for lp in group] == [len(a) for a in answers]
    for g, o in zip(group, one):
        np.testing.assert_allclose(g.detach().numpy(), o.detach().numpy(), rtol=0, atol=1e-12)
    assert grad.abs().min() > 1e-4
    np.testing.assert_allclose(grad.numpy(), twin.alpha.grad.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(TwinError, match="non-empty answers"):
        twin.group_logprobs(prompt, [[1], []])


def test_twin_matches_engine_on_smollm2(smollm2_gguf):
    model = kvforge.Model.load(str(smollm2_gguf))
    ids = model.tokenize("In 1969, Neil Armstrong became the first person to walk on the Moon. He said:")
    ref = kvforge.Context(model, n_ctx=64).eval(ids, all_logits=True)
    twin = Twin.from_gguf(str(smollm2_gguf))
    assert twin.alpha.shape == (model.config.n_layer, model.config.n_kv_head)
    ours = twin_logits(twin, ids)
    diff = np.abs(ours - ref)
    top1 = np.mean(ours.argmax(-1) == ref.argmax(-1))
    print(f"\n[twin vs engine, SmolLM2 Q4_1] max|diff|={diff.max():.3f} mean={diff.mean():.4f} top1={top1:.3f}")
    assert diff.max() <= 2.5 and diff.mean() <= 0.35 and top1 >= 0.9


def test_bad_input_is_one_clear_error(tiny_path, tmp_path):
    import gguf
    path = tmp_path / "falcon.gguf"
    w = gguf.GGUFWriter(str(path), "falcon")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(TwinError, match="supports the architectures .* not 'falcon'"):
        Twin.from_gguf(str(path))
    with pytest.raises(TwinError, match="cannot read GGUF"):
        Twin.from_gguf(str(tmp_path / "missing.gguf"))
    twin = Twin.from_gguf(tiny_path)
    with pytest.raises(TwinError, match=r"shape \(3, 2\) do not fit"):
        twin.set_gates(np.ones((3, 2)))
    with pytest.raises(TwinError, match="token ids"):
        twin(torch.tensor([[0, 300]]))
    with pytest.raises(TwinError, match="recent >= 1"):
        twin.set_stream(4, 0)
