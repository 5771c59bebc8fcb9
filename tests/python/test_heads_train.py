"""`kvforge heads train` / `python -m kvforge heads train` on a tiny random
model: files in the research code's format, determinism, resume equals an
uninterrupted run, 2 ranks (torchrun, gloo) equal 1 rank, clear errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_kvforge
from tiny_llama import write_tiny_llama

PY = sys.executable
DUO = ["--method", "duo", "--length", "320", "--sinks", "4", "--recent", "16", "--batch", "2", "--lam", "0.05",
       "-q"]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return str(write_tiny_llama(tmp_path_factory.mktemp("heads") / "tiny.gguf", seed=5, n_ctx=512))


def train(*args, check=True, cmd=None):
    """`python -m kvforge heads train ARGS` in a subprocess when cmd is
    given, else in this process (saves starting Python and torch)."""
    if cmd is None:
        import contextlib
        import io
        from kvforge.cli import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["heads", "train", *map(str, args)])
            except SystemExit as e:  # argparse
                rc = e.code
        r = subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
    else:
        r = subprocess.run([*cmd, "heads", "train", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def gates(out, name="full_attention_heads.tsv"):
    return np.loadtxt(os.path.join(out, name), delimiter="\t")


def test_duo_writes_gates_history_and_log(tiny_path, tmp_path):
    out = tmp_path / "duo"
    r = train(*DUO, "-m", tiny_path, "-o", out, "--steps", 2, "--seed", 1)
    assert r.stdout.strip() == str(out / "full_attention_heads.tsv")
    a = gates(out)
    assert a.shape == (2, 2) and np.all((a >= 0) & (a <= 1))
    hist = np.load(out / "alpha_history.npy")
    assert hist.shape == (3, 2, 2) and np.all(hist[0] == 1.0) and np.allclose(hist[-1], a)
    # Step 1 by hand: at alpha = 1 the MSE is 0 and flat, so only lam*mean|alpha|
    # pulls; AdamW's first step is lr * sign(grad) = 0.02 plus weight decay
    # lr * 0.01 * alpha, and every gate lands at 1 - 0.02 - 0.0002.
    np.testing.assert_allclose(hist[1], 1 - 0.02 - 0.0002, rtol=0, atol=1e-6)
    log = (out / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 2 and '"mse"' in log[0] and '"sparsity"' in log[0]


def test_resume_equals_uninterrupted(tiny_path, tmp_path):
    """Also determinism: separate runs with one seed give the same gates."""
    common = [*DUO, "-m", tiny_path, "--seed", 2, "--checkpoint-every", 1]
    train(*common, "-o", tmp_path / "whole", "--steps", 3)
    train(*common, "-o", tmp_path / "split", "--steps", 1)
    train(*common, "-o", tmp_path / "split", "--steps", 3)  # resumes from checkpoint.pt at step 1
    assert np.array_equal(gates(tmp_path / "split"), gates(tmp_path / "whole"))
    assert np.array_equal(np.load(tmp_path / "split" / "alpha_history.npy"),
                          np.load(tmp_path / "whole" / "alpha_history.npy"))


def test_two_ranks_equal_one_rank(tiny_path, tmp_path):
    common = [*DUO, "-m", tiny_path, "--seed", 3, "--steps", 2]
    train(*common, "-o", tmp_path / "one")
    torchrun = [PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "kvforge"]
    train(*common, "-o", tmp_path / "two", cmd=torchrun)  # a subprocess: torchrun starts the ranks
    # Gradients summed over ranks in another order: float32 rounding only.
    np.testing.assert_allclose(gates(tmp_path / "two"), gates(tmp_path / "one"), rtol=0, atol=1e-6)


def test_cli_hands_over_to_python(kvforge_bin, tiny_path, tmp_path):
    env = dict(os.environ, KVFORGE_PYTHON=PY)
    r = subprocess.run([str(kvforge_bin), "heads", "train", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "--method" in r.stdout and "python" not in r.stderr.lower()
    out = tmp_path / "cli"
    r = subprocess.run([str(kvforge_bin), "heads", "train", *DUO, "-m", tiny_path, "-o", str(out), "--steps", "1"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert gates(out).shape == (2, 2)


def test_cli_without_the_package_is_one_clear_error(kvforge_bin):
    # The venv's base interpreter, started directly, does not see the venv.
    base = os.path.realpath(PY)
    probe = subprocess.run([base, "-c", "import kvforge"], capture_output=True)
    assert probe.returncode != 0, "the base Python must not have kvforge for this test"
    r = subprocess.run([str(kvforge_bin), "heads", "train", "--method", "duo"], capture_output=True, text=True,
                       env=dict(os.environ, KVFORGE_PYTHON=base))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: the kvforge Python package is not installed") and "pip install" in r.stderr


def test_bad_input_errors(tiny_path, tmp_path):
    r = train("--method", "duo", "-m", tmp_path / "missing.gguf", "-o", tmp_path / "x", check=False)
    assert r.returncode == 1 and r.stderr.strip() == f"error: model file {tmp_path / 'missing.gguf'} not found"
    r = train(*DUO, "-m", tiny_path, "-o", tmp_path / "y", "--steps", 0, check=False)
    assert r.returncode == 1 and "--steps" in r.stderr
    r = train("--method", "magic", "-m", tiny_path, "-o", tmp_path / "z", check=False)
    assert r.returncode == 2 and "invalid choice" in r.stderr
