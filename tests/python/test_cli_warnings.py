"""Settings that work but surprise get one 'warning:' line on stderr and the
command still runs: more threads than CPUs, positions past the context the
model was trained on (SmolLM2-135M: 8192), an MLA attention path asked of a
model without latent layers."""
import os
import subprocess

from conftest import run_kvforge


def _cpus():
    return len(os.sched_getaffinity(0))


def test_threads_above_the_cpus_warn(kvforge_bin, smollm2_gguf):
    n = _cpus() + 1
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "Hi", "-n", "2", "--temp", "0", "-t", n)
    warnings = [l for l in r.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert warnings[0].startswith(f"warning: {n} threads on {_cpus()} CPUs: threads will wait"), warnings[0]
    assert f"threads {n}" in r.stderr  # and it ran with them


def test_default_threads_do_not_warn(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "Hi", "-n", "2", "--temp", "0")
    assert "warning" not in r.stderr, r.stderr


def test_context_past_training_warns(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "Hi", "-n", "2", "--temp", "0", "-c", "9000")
    assert "warning: -c 9000: 9000 positions, past the 8192 this model was trained on" in r.stderr, r.stderr
    assert "9000 cells" in r.stderr  # it ran with that context


def test_bench_past_training_warns_before_the_long_prefill(kvforge_bin, smollm2_gguf):
    # The warning comes before any work; the 100k-token prefill is not waited for.
    p = subprocess.Popen([str(kvforge_bin), "bench", "-m", str(smollm2_gguf), "-p", "0", "-n", "8", "-d", "100000",
                          "--bw-gbs", "10", "-r", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stderr.readline()
    finally:
        p.kill()
        p.wait()
    assert first.startswith("warning: the largest bench test: 100008 positions, past the 8192"), first


def test_mla_attn_on_a_model_without_latent_layers_warns(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "Hi", "-n", "2", "--temp", "0",
                    "--mla-attn", "naive")
    assert "warning: --mla-attn naive: this model has no latent (MLA) layers" in r.stderr, r.stderr
    assert r.returncode == 0
