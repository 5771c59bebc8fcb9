"""`kvforge serve` with the KV-cache policies other than the default, on the
default model: a window (StreamingLLM: sinks + ring per sequence) in q4 rows
with the Hadamard rotation, a per-head mixed cache in q8 rows. For each, greedy
tokens of concurrent requests equal those of each request alone and those of
`kvforge run` with the same policy; for the window, past the ring's wrap and
from a shared prefix (the rings refilled from the shared blocks). Every server listens on
127.0.0.1 on a free port; every wait is bounded."""
import concurrent.futures

import pytest

from conftest import run_kvforge
from test_serve import N_CTX, PROMPTS, Server, greedy

N_GEN = 28  # past the window's ring (4 sinks + 16) for every prompt
POLICIES = ["window:16,sinks:4+q4,hadamard", "heads:random:1,sparsity:0.5,sinks:4,recent:16+q8"]


def _run(kvforge_bin, model, prompt, kv, n):
    return run_kvforge(kvforge_bin, "run", "-m", model, "-p", prompt, "--temp", "0", "-n", n, "--ignore-eos",
                       "-c", N_CTX, "-t", "2", "--kv", kv).stdout


@pytest.mark.parametrize("kv", POLICIES)
def test_policy_batched_equals_solo_and_run(kvforge_bin, smollm2_gguf, kv):
    s = Server(kvforge_bin, smollm2_gguf, "--parallel", 2, "--kv", kv)
    try:
        c = s.client()
        prompts = PROMPTS[:2]
        solo = [greedy(c, p, n=N_GEN, ignore_eos=True) for p in prompts]
        with concurrent.futures.ThreadPoolExecutor(len(prompts)) as ex:
            batched = list(ex.map(lambda p: greedy(c, p, n=N_GEN, ignore_eos=True), prompts))
        assert batched == solo
        assert solo[1] + "\n" == _run(kvforge_bin, smollm2_gguf, prompts[1], kv, N_GEN)
        if kv.startswith("window"):
            # ~290 prompt tokens: a second request reuses the first one's
            # blocks (its rings filled from them), and gives `run`'s text.
            system = "You are a careful assistant. " + " ".join(f"Rule {i}: be brief." for i in range(40))
            questions = ["\nQ: What is 2+2?\nA:", "\nQ: Name a color.\nA:"]
            for q in questions:
                r = c.completions.create(model="m", prompt=system + q, max_tokens=4, temperature=0,
                                         extra_body={"ignore_eos": True})
            assert r.usage.prompt_tokens > 256 and r.usage.prompt_tokens_details.cached_tokens >= 256
            assert r.choices[0].text + "\n" == _run(kvforge_bin, smollm2_gguf, system + questions[1], kv, 4)
    finally:
        assert s.stop() == 0, s.proc.stderr.read()
