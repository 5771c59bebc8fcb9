"""`kvforge chat` keeps the KV cache between turns: the second turn prefills
only its own tokens (the end of the previous reply + the new user message),
not the whole conversation again, and the cache grows by exactly what was
prefilled and generated."""
import json
import re

from conftest import run_kvforge
from reference_models import kvforge_tokenize

PREFILL_RE = re.compile(r"prefilled (\d+) new tokens .* generated (\d+) .* cache (\d+)/(\d+)")


N_PREDICT = 48


def _evaluated(generated):
    """Generated tokens that went through the model: all of them when the reply
    ended at end-of-text (the end token itself is not counted), all but the
    last when it stopped at -n (no forward pass for a token nothing follows)."""
    return generated if generated < N_PREDICT else generated - 1


def test_chat_prefills_only_the_new_turn(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "chat", "-m", smollm2_gguf, "--temp", "0", "-n", N_PREDICT, "-c", "1024",
                    input="What is the capital of France?\nAnd of Italy?\n")
    turns = [tuple(map(int, m.groups())) for m in PREFILL_RE.finditer(r.stderr)]
    assert len(turns) == 2, r.stderr
    (p1, g1, c1, _), (p2, g2, c2, _) = turns
    assert 0 < g1 <= N_PREDICT and 0 < g2 <= N_PREDICT, (g1, g2)
    # Turn 1: the whole first prompt (default system message + question).
    first = run_kvforge(kvforge_bin, "chat-template", "-m", smollm2_gguf, "--messages",
                        json.dumps([{"role": "user", "content": "What is the capital of France?"}])).stdout
    assert p1 == len(kvforge_tokenize(kvforge_bin, smollm2_gguf, first))
    # Turn 2: the last token of reply 1 if it never went through the model,
    # then the turn end, the separator and the new message; nothing else.
    chunk = run_kvforge(kvforge_bin, "chat-template", "-m", smollm2_gguf, "--continuation", "--messages",
                        json.dumps([{"role": "user", "content": "And of Italy?"}])).stdout
    n_chunk = len(kvforge_tokenize(kvforge_bin, smollm2_gguf, "<|im_end|>\n" + chunk))
    assert p2 == n_chunk + (g1 - _evaluated(g1)), (p2, n_chunk, g1)
    assert p2 < c1  # far less than re-reading the conversation
    # The cache holds exactly what went through the model, turn by turn.
    assert c1 == p1 + _evaluated(g1), (c1, p1, g1)
    assert c2 == c1 + p2 + _evaluated(g2), (c2, c1, p2, g2)
    assert len([l for l in r.stdout.splitlines() if l.strip()]) >= 2, r.stdout  # two replies
