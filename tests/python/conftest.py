"""Shared pytest fixtures: where the kvforge binary and the default model are."""
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def pytest_addoption(parser):
    parser.addoption("--kvforge-bin", default=str(REPO / "build" / "kvforge"),
                     help="path to the kvforge binary under test")


@pytest.fixture(scope="session")
def kvforge_bin(request):
    path = pathlib.Path(request.config.getoption("--kvforge-bin"))
    if not path.exists():
        pytest.fail(f"kvforge binary not found at {path}; build first (scripts/build.sh)")
    return path


def _cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "kvforge"


@pytest.fixture(scope="session")
def smollm2_gguf(kvforge_bin):
    """The default model, pulled by `kvforge pull` if it is not cached yet."""
    path = _cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        subprocess.run([str(kvforge_bin), "pull"], check=True)
    return path


def run_kvforge(binary, *args, check=True, input=None, timeout=600):
    """Runs the CLI and returns the CompletedProcess (text mode)."""
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                          check=check, input=input, timeout=timeout)


@pytest.fixture(scope="session")
def eval_text(kvforge_bin):
    """The pinned evaluation text (Botchan), fetched by `kvforge pull --eval-text`."""
    r = subprocess.run([str(kvforge_bin), "pull", "--eval-text"], capture_output=True, text=True, check=True)
    path = pathlib.Path(r.stdout.strip())
    assert path.is_file(), r.stderr
    return path
