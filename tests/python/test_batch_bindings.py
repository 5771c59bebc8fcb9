"""kvforge.BatchContext: several sequences in one multi-sequence cache,
decoded together (Context::decode). The engine's exactness contract:
every run's logits are bit-identical to evaluating that sequence alone,
whatever else shares its forward pass."""
import numpy as np
import pytest

import kvforge
from test_python_bindings import finds_busy
from tiny_llama import write_tiny_llama

PROMPTS = [list(b"The first sequence, a longer one than the others."), list(b"Second."),
           list(b"A third prompt: 0123456789")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return kvforge.Model.load(str(write_tiny_llama(tmp_path_factory.mktemp("batch") / "tiny.gguf", seed=11)))


def alone(model, tokens):
    """All logits of tokens evaluated alone, in an ordinary one-sequence Context."""
    return kvforge.Context(model, n_ctx=128, kv="full").eval(tokens, all_logits=True)


def test_batched_logits_equal_one_sequence_at_a_time(tiny):
    b = kvforge.BatchContext(tiny, n_seqs=3, n_ctx=128, n_threads=1)
    for seq in (1, 2):
        b.add_sequence(seq)
    # Prefill of all three in one forward pass, then decode steps: a token per
    # sequence per pass, while sequence 2 gets two tokens at a time.
    got = [[x] for x in b.decode(list(enumerate(PROMPTS)), all_logits=True)]
    texts = [list(p) for p in PROMPTS]
    for step in range(3):
        runs = [(0, [65 + step]), (1, [97 + step]), (2, [48 + step, 49 + step])]
        for (seq, toks), logits in zip(runs, b.decode(runs, all_logits=True)):
            got[seq].append(logits)
            texts[seq] += toks
    for seq in range(3):
        ours = np.concatenate(got[seq])
        assert ours.shape == (len(texts[seq]), tiny.config.n_vocab) and ours.dtype == np.float32
        assert np.array_equal(ours, alone(tiny, texts[seq]))
        assert b.n_past(seq) == len(texts[seq])
    # Last-token logits (the default) are the last row.
    last = b.decode([(1, [10]), (0, [11])])
    assert [x.shape for x in last] == [(tiny.config.n_vocab,)] * 2
    assert np.array_equal(last[0], alone(tiny, texts[1] + [10])[-1])
    assert np.array_equal(last[1], alone(tiny, texts[0] + [11])[-1])


def test_sequences_fork_truncate_remove_reset(tiny):
    b = kvforge.BatchContext(tiny, n_seqs=2, n_ctx=64, n_threads=1)
    assert b.has_sequence(0) and not b.has_sequence(1) and b.n_ctx == 64 and b.model.config.n_vocab == 257
    first = b.decode([(0, PROMPTS[1])])[0]
    b.fork(0, 1)  # shares the cache of sequence 0
    assert b.n_past(1) == len(PROMPTS[1])
    x0, x1 = b.decode([(0, [33]), (1, [33])])
    assert np.array_equal(x0, x1) and np.array_equal(x0, alone(tiny, PROMPTS[1] + [33])[-1])
    b.truncate(1, 3)
    assert b.n_past(1) == 3
    again = b.decode([(1, PROMPTS[1][3:])])[0]
    assert np.array_equal(again, first)
    b.remove_sequence(1)
    assert not b.has_sequence(1)
    b.reset()
    assert b.has_sequence(0) and b.n_past(0) == 0


def test_errors_are_exceptions_with_the_engines_message(tiny):
    b = kvforge.BatchContext(tiny, n_seqs=2, n_ctx=32, n_batch=16, n_threads=1)
    with pytest.raises(kvforge.Error, match="two runs"):
        b.decode([(0, [1]), (0, [2])])
    with pytest.raises(kvforge.Error, match="nothing to decode"):
        b.decode([])
    with pytest.raises(kvforge.Error):
        b.decode([(1, [1])])  # sequence 1 was never added
    with pytest.raises(kvforge.Error, match="exceeds the batch size 16"):
        b.decode([(0, list(range(17)))])
    with pytest.raises(kvforge.Error, match="out of range"):
        b.decode([(0, [999])])
    assert b.n_past(0) == 0  # nothing above touched the cache
    b.decode([(0, list(range(16)))])
    b.decode([(0, list(range(16)))])
    with pytest.raises(kvforge.Error):
        b.decode([(0, [1])])  # the sequence's context (32) is full
    with pytest.raises(kvforge.Error):
        kvforge.BatchContext(tiny, n_seqs=2, kv="h2o:16")  # token eviction is single-sequence
    with pytest.raises(kvforge.Error):
        kvforge.BatchContext(tiny, n_seqs=0)


def test_gil_is_released_during_decode(tiny):
    """While one thread is inside decode, another runs Python and finds the
    context busy."""
    b = kvforge.BatchContext(tiny, n_seqs=2, n_ctx=256, n_batch=512, n_threads=1)

    def work():
        for _ in range(20):
            b.reset()
            b.add_sequence(1)
            b.decode([(0, [7] * 255), (1, [8] * 255)])
    assert finds_busy(work, lambda: b.n_past(0))
