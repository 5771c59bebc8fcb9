"""The kvforge Python package (pip install ./): every exposed call, errors,
lifetime, the GIL released during compute, NumPy arrays without copies, and
logits identical to the `kvforge logits` CLI (the same engine code, so
bit-identical: the engine's exactness contract makes results independent of
how the tokens are batched)."""
import gc
import pathlib
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

import kvforge
from reference_models import kvforge_logits, kvforge_tokenize
from tiny_llama import TINY, write_tiny_llama

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return kvforge.Model.load(str(tiny_path))


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    return kvforge.Model.load(str(smollm2_gguf))


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_model_config_and_tokens(tiny):
    c = tiny.config
    assert (c.arch, c.n_layer, c.n_head, c.n_kv_head, c.d_model, c.d_ff, c.n_vocab) == \
        ("llama", TINY["n_layer"], TINY["n_head"], TINY["n_kv_head"], TINY["d_model"], TINY["d_ff"], 257)
    assert c.head_dim_k == c.head_dim_v == 16 and c.n_ctx_train == 256 and c.norm_eps == pytest.approx(1e-5)
    assert tiny.eos == 256 and tiny.is_end_of_generation(256) and not tiny.is_end_of_generation(65)
    assert tiny.weight_bytes > 4 * 257 * 64
    ids = tiny.tokenize("hé!", add_bos=False)
    assert ids == list("hé!".encode())  # byte-level vocabulary without merges
    assert tiny.detokenize(ids) == "hé!"
    assert tiny.token_to_piece(ids[1]) == b"\xc3"  # half of "é": raw bytes
    assert tiny.detokenize([ids[1]]) == "\ufffd"
    assert tiny.detokenize([256], keep_special=True) == "<|endoftext|>" and tiny.detokenize([256]) == ""


def test_tokenize_matches_cli(kvforge_bin, smollm2_gguf, smol):
    text = "<|im_start|>user\nHi there, KV cache!<|im_end|>"
    assert smol.tokenize(text) == kvforge_tokenize(kvforge_bin, smollm2_gguf, text)
    assert smol.tokenize(text, parse_special=False) != smol.tokenize(text)
    assert smol.detokenize(smol.tokenize(PROMPT)) == PROMPT


def test_eval_logits_equal_cli(kvforge_bin, smollm2_gguf, smol, tmp_path):
    ids = smol.tokenize(PROMPT)
    cli = kvforge_logits(kvforge_bin, smollm2_gguf, ids, tmp_path)
    ctx = kvforge.Context(smol, n_ctx=64)
    ours = ctx.eval(ids, all_logits=True)
    assert ours.dtype == np.float32 and ours.shape == (len(ids), smol.config.n_vocab)
    assert np.array_equal(ours, cli)
    assert ctx.n_past == len(ids)
    # Token by token through the cache: the same bits.
    ctx.reset()
    assert ctx.n_past == 0
    last = [ctx.eval([t]) for t in ids]
    assert last[-1].shape == (smol.config.n_vocab,)
    assert np.array_equal(np.stack(last), cli)


def test_arrays_are_not_copies(tiny):
    ctx = kvforge.Context(tiny, n_ctx=32)
    logits = ctx.eval([1, 2, 3], all_logits=True)
    # NumPy does not own the buffer: it is the one the engine wrote into,
    # kept alive by the array's base object.
    assert not logits.flags.owndata and logits.base is not None and logits.flags.c_contiguous
    res = ctx.generate([4, 5], n_predict=3, temperature=0, ignore_eos=True)
    lp = res.logprobs
    assert not lp.flags.owndata and lp.shape == (3,) and not lp.flags.writeable
    assert np.shares_memory(lp, res.logprobs)  # both views on the result's own vector
    del res
    gc.collect()
    assert np.all(np.isfinite(lp))  # the view kept the result alive


def test_logprobs_are_log_softmax_of_logits(tiny):
    ids = [10, 20, 30, 40, 50, 60]
    ctx = kvforge.Context(tiny, n_ctx=32)
    logits = ctx.eval(ids, all_logits=True)
    ctx.reset()
    lp = ctx.logprobs(ids)
    want = log_softmax(logits)[np.arange(len(ids) - 1), ids[1:]]
    assert lp.shape == (len(ids) - 1,) and lp.dtype == np.float32
    np.testing.assert_allclose(lp, want, rtol=0, atol=1e-5)


def test_greedy_generation_follows_argmax(tiny):
    prompt = [72, 101, 108, 108, 111]
    res = kvforge.Context(tiny, n_ctx=64).generate(prompt, n_predict=8, temperature=0, ignore_eos=True)
    assert res.stop_reason == "length" and res.n_prompt == 5 and len(res.tokens) == 8 and res.n_decoded == 7
    ctx = kvforge.Context(tiny, n_ctx=64)
    logits = ctx.eval(prompt)
    for tok, lp in zip(res.tokens, res.logprobs):
        assert tok == int(np.argmax(logits))
        assert lp == pytest.approx(log_softmax(logits)[tok], abs=1e-5)
        logits = ctx.eval([tok])


def test_sampling_options_and_seeds(tiny):
    def run(**kw):
        return kvforge.Context(tiny, n_ctx=64).generate([1, 2, 3], n_predict=16, ignore_eos=True, **kw).tokens

    plain = dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)
    assert run(seed=7, **plain) == run(seed=7, **plain)
    assert run(seed=7, **plain) != run(seed=8, **plain)
    # top_k=1 is greedy whatever the temperature and seed.
    assert run(top_k=1, temperature=2.0, seed=3) == run(temperature=0)
    # A strong repetition penalty changes a greedy text that repeats itself.
    greedy = run(temperature=0)
    if len(set(greedy)) < len(greedy):
        assert run(temperature=0, repeat_penalty=5.0, repeat_last_n=64) != greedy
    assert len(run(top_p=0.5, min_p=0.2, seed=1)) == 16
    with pytest.raises(kvforge.Error, match="top_p"):
        run(top_p=1.5)
    with pytest.raises(TypeError, match="unknown generation option 'temprature'"):
        run(temprature=1.0)


def test_stop_strings_streaming_and_callbacks(smol):
    prompt = smol.tokenize("1, 2, 3, 4, 5,")
    common = dict(n_predict=24, temperature=0)
    full = kvforge.Context(smol, n_ctx=128).generate(prompt, **common)
    text = smol.detokenize(full.tokens)
    assert " 7," in text
    stopped = kvforge.Context(smol, n_ctx=128).generate(prompt, stop=" 7,", **common)
    assert stopped.stop_reason == "stop string"
    seen = []
    kvforge.Context(smol, n_ctx=128).generate(prompt, stop=[" 7,"], on_text=seen.append, **common)
    assert "".join(seen) == text[:text.index(" 7,")]
    chunks = list(kvforge.Context(smol, n_ctx=128).stream(prompt, **common))
    assert len(chunks) > 1 and "".join(chunks) == text
    # Leaving the stream early stops the engine; the context is usable again.
    ctx = kvforge.Context(smol, n_ctx=128)
    for _ in ctx.stream(prompt, **common):
        break
    ctx.reset()
    assert ctx.generate(prompt, **common).tokens == full.tokens

    def boom(_):
        raise ValueError("callback failed")
    with pytest.raises(ValueError, match="callback failed"):
        kvforge.Context(smol, n_ctx=128).generate(prompt, on_text=boom, **common)
    with pytest.raises(kvforge.Error, match="top_k"):
        list(kvforge.Context(smol, n_ctx=128).stream(prompt, top_k=-1))


def test_kv_policies(tiny):
    ids = list(range(40, 80))
    full = kvforge.Context(tiny, n_ctx=64, kv="full+f32").eval(ids, all_logits=True)
    win = kvforge.Context(tiny, n_ctx=64, kv="window:8,sinks:4+f32").eval(ids, all_logits=True)
    # Identical while every token is inside the window, different after.
    assert np.array_equal(full[:12], win[:12])
    assert not np.allclose(full[-1], win[-1])
    f16 = kvforge.Context(tiny, n_ctx=64, kv="f16").eval(ids, all_logits=True)
    assert not np.array_equal(f16, full) and np.abs(f16 - full).max() < 0.05
    with pytest.raises(kvforge.Error, match="window"):
        kvforge.Context(tiny, kv="window:x")


def test_errors_carry_the_engine_message(tiny, tmp_path):
    with pytest.raises(kvforge.Error, match="nope.gguf"):
        kvforge.Model.load(str(tmp_path / "nope.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(kvforge.Error):
        kvforge.Model.load(str(bad))
    assert issubclass(kvforge.Error, RuntimeError)
    ctx = kvforge.Context(tiny, n_ctx=8)
    with pytest.raises(kvforge.Error, match="nothing to evaluate"):
        ctx.eval([])
    with pytest.raises(kvforge.Error, match="out of range"):
        ctx.eval([257])
    with pytest.raises(kvforge.Error, match="context full"):
        ctx.eval(list(range(9)))
    assert ctx.n_past == 0  # a refused eval leaves the cache untouched
    with pytest.raises(kvforge.Error, match="at least 2 tokens"):
        ctx.logprobs([1])
    with pytest.raises(kvforge.Error, match="empty"):
        ctx.generate([])
    with pytest.raises(kvforge.Error):
        tiny.detokenize([1000])
    with pytest.raises(kvforge.Error, match="batch size must be positive"):
        kvforge.Context(tiny, n_batch=0)


def test_model_outlives_its_python_name(tiny_path):
    model = kvforge.Model.load(str(tiny_path))
    ref = weakref.ref(model)
    ctx = kvforge.Context(model, n_ctx=16)
    want = ctx.eval([1, 2, 3])
    del model
    gc.collect()
    assert ref() is not None  # the context keeps it alive
    assert ctx.model is ref()
    ctx.reset()
    assert np.array_equal(ctx.eval([1, 2, 3]), want)
    del ctx
    gc.collect()
    assert ref() is None


def test_two_threads_decode_at_once(smol):
    prompts = [smol.tokenize("Once upon a time"), smol.tokenize("def main():")]
    opts = dict(n_predict=12, temperature=0.9, seed=5)
    alone = [kvforge.Context(smol, n_ctx=64, n_threads=1).generate(p, **opts).tokens for p in prompts]
    together = [None, None]

    def work(i):
        together[i] = kvforge.Context(smol, n_ctx=64, n_threads=1).generate(prompts[i], **opts).tokens
    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def finds_busy(work, poke):
    """Runs work() in a thread while this one calls poke() (which holds the
    GIL) until it raises the engine's busy error: True if it did before work
    ended, which is possible only if work let go of the GIL."""
    started, finished = threading.Event(), threading.Event()

    def run():
        started.set()
        try:
            work()
        finally:
            finished.set()
    t = threading.Thread(target=run)
    t.start()
    started.wait()
    saw_busy = False
    while not finished.is_set():
        try:
            poke()
        except kvforge.Error as e:
            assert "in use by another thread" in str(e)
            saw_busy = True
            break
    t.join()
    return saw_busy


def test_gil_is_released_during_eval(smol):
    """While one thread is inside eval, another thread runs Python and finds
    the context busy."""
    ctx = kvforge.Context(smol, n_ctx=512, n_threads=1)
    ids = smol.tokenize("word " * 300)
    assert finds_busy(lambda: ctx.eval(ids), ctx.reset)


def test_type_stubs_are_current(tmp_path):
    """python/kvforge/_core.pyi is what nanobind's stub generator writes for
    the built module (regenerate: python -m nanobind.stubgen -m kvforge._core
    -o python/kvforge/_core.pyi)."""
    out = tmp_path / "_core.pyi"
    subprocess.run([sys.executable, "-m", "nanobind.stubgen", "-q", "-m", "kvforge._core", "-o", str(out)],
                   check=True, cwd=tmp_path)
    committed = pathlib.Path(__file__).resolve().parents[2] / "python" / "kvforge" / "_core.pyi"
    assert out.read_text() == committed.read_text()
