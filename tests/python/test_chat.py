"""`kvforge chat` keeps the KV cache between turns: the second turn prefills
only its own tokens (the end of the previous reply + the new user message),
not the whole conversation again, and the cache grows by exactly what was
prefilled and generated."""
import json
import re

from conftest import run_kvforge
from reference_models import kvforge_tokenize

PREFILL_RE = re.compile(r"prefilled (\d+) new tokens .* generated (\d+) .* cache (\d+)/(\d+)")


def test_chat_prefills_only_the_new_turn(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "chat", "-m", smollm2_gguf, "--temp", "0", "-n", "48", "-c", "1024",
                    input="What is the capital of France?\nAnd of Italy?\n")
    turns = [tuple(map(int, m.groups())) for m in PREFILL_RE.finditer(r.stderr)]
    assert len(turns) == 2, r.stderr
    (p1, g1, c1, _), (p2, g2, c2, _) = turns
    # Turn 1: the whole first prompt (default system message + question).
    first = run_kvforge(kvforge_bin, "chat-template", "-m", smollm2_gguf, "--messages",
                        json.dumps([{"role": "user", "content": "What is the capital of France?"}])).stdout
    assert p1 == len(kvforge_tokenize(kvforge_bin, smollm2_gguf, first))
    # Turn 2: only the turn end, the separator and the new message (+ at most
    # one generated token that was never evaluated when turn 1 hit -n).
    chunk = run_kvforge(kvforge_bin, "chat-template", "-m", smollm2_gguf, "--continuation", "--messages",
                        json.dumps([{"role": "user", "content": "And of Italy?"}])).stdout
    n_chunk = len(kvforge_tokenize(kvforge_bin, smollm2_gguf, "<|im_end|>\n" + chunk))
    assert p2 in (n_chunk, n_chunk + 1), (p2, n_chunk)
    assert p2 < c1  # far less than re-reading the conversation
    # The cache holds exactly what went through the model.
    assert c2 >= c1 + p2
    assert g2 > 0
    assert len([l for l in r.stdout.splitlines() if l.strip()]) >= 2, r.stdout  # two replies
