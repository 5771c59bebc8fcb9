"""Bad input gets one clear 'error:' line and a non-zero exit, never a crash."""
import shutil
import struct

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


_SCALAR_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value types


def _gguf_layout(data):
    """Offsets of the header fields of a GGUF v3 file, walked by hand:
    {"kv": [(key, key_len_at, type_at, value_at)], "tensors": [(name, name_at,
    n_dims_at, dims_at, type_at, offset_at)]} (value_at of an array: its element type)."""
    pos = 24
    def u32():
        nonlocal pos
        pos += 4
        return struct.unpack_from("<I", data, pos - 4)[0]
    def u64():
        nonlocal pos
        pos += 8
        return struct.unpack_from("<Q", data, pos - 8)[0]
    def string():
        nonlocal pos
        n = u64()
        pos += n
        return data[pos - n:pos].decode()
    def skip_value(t):
        nonlocal pos
        if t == 8:
            string()
        elif t == 9:
            et, n = u32(), u64()
            if et == 8:
                for _ in range(n):
                    string()
            else:
                pos += _SCALAR_SIZE[et] * n
        else:
            pos += _SCALAR_SIZE[t]
    n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
    kv, tensors = [], []
    for _ in range(n_kv):
        key_at = pos
        key = string()
        type_at = pos
        t = u32()
        kv.append((key, key_at, type_at, pos))
        skip_value(t)
    for _ in range(n_tensors):
        name_at = pos
        name = string()
        n_dims_at = pos
        n_dims = u32()
        dims_at = pos
        pos += 8 * n_dims
        tensors.append((name, name_at, n_dims_at, dims_at, pos, pos + 4))
        pos += 12
    return {"kv": kv, "tensors": tensors}


CORRUPTIONS = ["magic", "version", "tensor count", "metadata count", "empty key", "key length", "value type",
               "array element type", "array length", "tensor dimensions", "empty dimension", "tensor type",
               "misaligned offset", "offset past the end", "overlapping tensors"]


def _header_corruptions(data):
    """name -> (offset, new bytes, text the error must contain): each way the
    reader must refuse a damaged header, with an error that says what is wrong."""
    lay = _gguf_layout(data)
    kv = {k[0]: k for k in lay["kv"]}
    t0, t1 = lay["tensors"][0], lay["tensors"][1]
    tokens = kv["tokenizer.ggml.tokens"]
    u32, u64 = (lambda v: struct.pack("<I", v)), (lambda v: struct.pack("<Q", v))
    return {
        "magic": (0, b"GGUX", "bad magic"),
        "version": (4, u32(7), "unsupported GGUF version 7"),
        "tensor count": (8, u64(1 << 62), "tensors, impossible"),
        "metadata count": (16, u64(1 << 62), "metadata entries, impossible"),
        "empty key": (lay["kv"][0][1], u64(0), "empty key"),
        "key length": (lay["kv"][0][1], u64(1 << 40), "truncated file"),
        "value type": (lay["kv"][0][2], u32(99), "unknown value type 99"),
        "array element type": (tokens[3], u32(77), "array of unknown value type 77"),
        "array length": (tokens[3] + 4, u64(1 << 60), "array elements"),
        "tensor dimensions": (t0[2], u32(7), "has 7 dimensions"),
        "empty dimension": (t0[3], u64(0), "empty dimension"),
        "tensor type": (t0[4], u32(99), "unknown type id 99"),
        "misaligned offset": (t1[5], u64(struct.unpack_from("<Q", data, t1[5])[0] + 1), "not aligned"),
        "offset past the end": (t1[5], u64(1 << 40), "outside"),
        "overlapping tensors": (t1[5], data[t0[5]:t0[5] + 8], "overlap"),
    }


@pytest.fixture(scope="module")
def model_copy(smollm2_gguf, tmp_path_factory):
    """A copy of the default model, its bytes and its corruption cases; a test
    may damage the copy but must put the bytes back."""
    p = tmp_path_factory.mktemp("corrupt") / "model.gguf"
    shutil.copyfile(smollm2_gguf, p)
    data = p.read_bytes()
    return p, data, _header_corruptions(data)


def test_corruption_cases_cover_the_list(model_copy):
    assert sorted(model_copy[2]) == sorted(CORRUPTIONS)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_header_field_is_refused(kvforge_bin, model_copy, name):
    """A damaged header field is refused with an error that names the fault."""
    path, data, cases = model_copy
    at, new, expected = cases[name]
    assert data[at:at + len(new)] != new  # the bytes really change
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(new)
    try:
        r = run_kvforge(kvforge_bin, "run", "-m", path, "-p", "hi", "-n", "1", check=False)
    finally:
        with open(path, "r+b") as f:
            f.seek(at)
            f.write(data[at:at + len(new)])
    _assert_clean_error(r, expected)


def test_corrupted_copy_restored_runs(kvforge_bin, model_copy):
    """After the cases above the copy is byte-identical again and runs: each
    refusal was caused by its damage, not by the copy or the walk."""
    path, data, _ = model_copy
    assert path.read_bytes() == data
    run_kvforge(kvforge_bin, "run", "-m", path, "-p", "hi", "-n", "1")


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


@pytest.mark.parametrize("args, needle", [
    (["run", "-p", "hi", "-t", "-1"], "--threads"),
    (["bench", "-t", "1,x"], "--threads"),
    (["run", "-p", "hi", "--no-such-flag"], "--no-such-flag"),
    (["run", "-p", "hi", "-n"], "-n"),
    (["frobnicate"], "subcommand"),
])
def test_bad_flags(kvforge_bin, args, needle):
    _assert_clean_error(run_kvforge(kvforge_bin, *args, check=False), needle)


@pytest.mark.parametrize("args, message", [
    (["bench", "--parallel", "1,x"], "--parallel: 'x' is not a number"),
    (["bench", "--parallel", "0"], "--parallel: must be > 0, not 0"),
    (["run", "-p", "hi", "--keep", "-3"], "--keep: must be >= 0, not -3"),
    (["serve", "--port", "8080", "--parallel", "two"], "--parallel: 'two' is not a number"),
])
def test_bad_numbers_are_named_briefly(kvforge_bin, args, message):
    # CLI11's own range check printed the range up to DBL_MAX (309 digits)
    # for a value that is no number at all.
    r = run_kvforge(kvforge_bin, *args, check=False)
    _assert_clean_error(r)
    assert message in r.stderr, r.stderr
    assert len(r.stderr) < 200, r.stderr


def test_bad_token_ids_for_logits(kvforge_bin, smollm2_gguf, tmp_path):
    r = run_kvforge(kvforge_bin, "logits", "-m", smollm2_gguf, "--tokens", "[1, 99999999]", "-o",
                    tmp_path / "x.npy", check=False)
    _assert_clean_error(r, "out of range")
    r = run_kvforge(kvforge_bin, "logits", "-m", smollm2_gguf, "--tokens", "[1, ", "-o", tmp_path / "x.npy",
                    check=False)
    _assert_clean_error(r, "JSON")
