"""Bad input gets one clear 'error:' line and a non-zero exit, never a crash."""
import shutil
import struct

import numpy as np
import pytest

from conftest import run_kvforge


def _assert_clean_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _raw_gguf(path, arch="llama", tensor_type=0):
    """A minimal GGUF v3 written by hand, so fields the libraries refuse to
    write (unknown tensor type ids) can be produced."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    kv = s("general.architecture") + struct.pack("<I", 8) + s(arch)
    ti = s("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 32, 4) + \
        struct.pack("<I", tensor_type) + struct.pack("<Q", 0)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + kv + ti
    head += b"\0" * ((32 - len(head) % 32) % 32)
    path.write_bytes(head + b"\0" * (32 * 4 * 4))
    return path


def test_missing_file(kvforge_bin, tmp_path):
    r = run_kvforge(kvforge_bin, "run", "-m", tmp_path / "nope.gguf", "-p", "hi", check=False)
    _assert_clean_error(r, "nope.gguf")


def test_not_a_gguf(kvforge_bin, tmp_path):
    p = tmp_path / "junk.gguf"
    p.write_bytes(b"this is not a model file at all" * 10)
    _assert_clean_error(run_kvforge(kvforge_bin, "run", "-m", p, "-p", "hi", check=False))


@pytest.mark.parametrize("size", [0, 3, 24, 4096, 1 << 20, 50_000_000])
def test_truncated_model(kvforge_bin, smollm2_gguf, tmp_path, size):
    p = tmp_path / "trunc.gguf"
    with open(smollm2_gguf, "rb") as f:
        p.write_bytes(f.read(size))
    _assert_clean_error(run_kvforge(kvforge_bin, "run", "-m", p, "-p", "hi", check=False))


def test_corrupt_header_fields(kvforge_bin, smollm2_gguf, tmp_path):
    data = bytearray(open(smollm2_gguf, "rb").read(1 << 16))
    rng = np.random.default_rng(0)
    for trial in range(8):
        d = bytearray(data)
        for pos in rng.integers(4, 4096, size=6):
            d[pos] = int(rng.integers(0, 256))
        p = tmp_path / f"corrupt{trial}.gguf"
        p.write_bytes(bytes(d))
        r = run_kvforge(kvforge_bin, "run", "-m", p, "-p", "hi", "-n", "4", check=False)
        # A flipped byte inside a token's text leaves a valid file: success is
        # fine then. Anything else must be a clean error, never a crash.
        if r.returncode != 0:
            _assert_clean_error(r)


def test_unknown_architecture(kvforge_bin, tmp_path):
    r = run_kvforge(kvforge_bin, "run", "-m", _raw_gguf(tmp_path / "a.gguf", arch="frobnicator"), "-p", "hi",
                    check=False)
    _assert_clean_error(r, "frobnicator")


def test_unknown_tensor_type(kvforge_bin, tmp_path):
    r = run_kvforge(kvforge_bin, "run", "-m", _raw_gguf(tmp_path / "t.gguf", tensor_type=99), "-p", "hi",
                    check=False)
    _assert_clean_error(r, "99")


@pytest.mark.parametrize("type_id,name", [(9, "Q8_1"), (16, "IQ2_XXS"), (19, "IQ1_S")])
def test_known_but_unsupported_tensor_type_is_named(kvforge_bin, tmp_path, type_id, name):
    # Types GGUF defines but kvforge cannot compute with: refused by name as
    # soon as the tensor table is read (before the shape is looked at).
    r = run_kvforge(kvforge_bin, "run", "-m", _raw_gguf(tmp_path / "t.gguf", tensor_type=type_id), "-p", "hi",
                    check=False)
    _assert_clean_error(r, name)


def test_prompt_longer_than_context(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-c", "32", "-p", "word " * 100, check=False)
    _assert_clean_error(r, "context")


def test_missing_prompt(kvforge_bin, smollm2_gguf):
    _assert_clean_error(run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, check=False), "prompt")


def test_bad_sampling_parameter(kvforge_bin, smollm2_gguf):
    r = run_kvforge(kvforge_bin, "run", "-m", smollm2_gguf, "-p", "hi", "--top-p", "1.5", check=False)
    _assert_clean_error(r)


def test_bad_token_ids_for_logits(kvforge_bin, smollm2_gguf, tmp_path):
    r = run_kvforge(kvforge_bin, "logits", "-m", smollm2_gguf, "--tokens", "[1, 99999999]", "-o",
                    tmp_path / "x.npy", check=False)
    _assert_clean_error(r, "out of range")
    r = run_kvforge(kvforge_bin, "logits", "-m", smollm2_gguf, "--tokens", "[1, ", "-o", tmp_path / "x.npy",
                    check=False)
    _assert_clean_error(r, "JSON")
