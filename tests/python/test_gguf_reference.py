"""Our GGUF reader and dequantization against gguf-py, the format's reference
Python implementation: synthetic files of every supported tensor type, the
real SmolLM2 model, metadata via `inspect --json`, and error handling.

Tolerance: none. Every supported type dequantizes with a fixed float32
operation order — (d * scale) * q - (dmin * min), or d * q + m for Q4_1 and
Q5_1, (d * scale) * grid[q] for IQ4_XS — that
gguf-py's numpy code performs in the same order, with f16/bf16 -> f32
conversions that are exact. Float32 multiply/subtract are correctly rounded,
so identical operation order gives identical bits; we compare bit patterns.
"""
import json
import pathlib

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT  # noqa: E402

from conftest import run_kvforge  # noqa: E402

SUPPORTED = [QT.F32, QT.F16, QT.BF16, QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.IQ4_NL,
             QT.Q2_K, QT.Q3_K, QT.Q4_K, QT.Q5_K, QT.Q6_K, QT.IQ4_XS]

# Byte offsets of the fp16 scale fields in the blocks of the types gguf-py
# cannot quantize: random bytes are a valid block everywhere else, but these
# must be finite halves.
K_SCALE_FIELDS = {QT.Q2_K: (80, 82), QT.Q3_K: (108,), QT.Q4_K: (0, 2), QT.Q5_K: (0, 2), QT.Q6_K: (208,),
                  QT.IQ4_NL: (0,), QT.IQ4_XS: (0,)}


def assert_bits_equal(ours, ref):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    ours = np.ascontiguousarray(ours, dtype=np.float32)
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    diff = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
    assert diff.size == 0, f"{diff.size} elements differ, first at {diff[0]}: {ours.flat[diff[0]]} vs {ref.flat[diff[0]]}"


def make_raw(qtype, rows, cols, rng):
    """Encoded bytes (rows, row_bytes) for qtype: quantized by gguf-py where it
    can, otherwise random blocks with sane fp16 scales."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    values = rng.standard_normal((rows, cols)).astype(np.float32)
    try:
        q = gguf.quants.quantize(values, qtype)
        return q.view(np.uint8).reshape(rows, -1)
    except NotImplementedError:
        pass
    nblocks = rows * cols // block
    raw = rng.integers(0, 256, size=(nblocks, nbytes), dtype=np.uint8)
    for off in K_SCALE_FIELDS[qtype]:
        scale = (rng.uniform(-0.05, 0.05, size=nblocks)).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(rows, -1)


def write_gguf(path, tensors):
    w = gguf.GGUFWriter(str(path), "llama")
    for name, (qtype, raw) in tensors.items():
        w.add_tensor(name, raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dump(kvforge_bin, model, name, out):
    run_kvforge(kvforge_bin, "dump-tensor", model, name, "-o", out)
    return np.load(out)


@pytest.mark.parametrize("qtype", SUPPORTED, ids=lambda t: t.name)
def test_synthetic_types_match_gguf_py(kvforge_bin, tmp_path, qtype):
    rng = np.random.default_rng(1234 + int(qtype))
    rows, cols = 3, 512  # 512 is a whole number of blocks for every type
    raw = make_raw(qtype, rows, cols, rng)
    if qtype == QT.F32:
        raw = raw.view(np.float32)
    elif qtype == QT.F16:
        raw = raw.view(np.float16)
    model = tmp_path / f"{qtype.name}.gguf"
    write_gguf(model, {"t": (qtype, raw)})
    ours = dump(kvforge_bin, model, "t", tmp_path / "t.npy")
    ref = gguf.quants.dequantize(raw.view(np.uint8) if qtype not in (QT.F32, QT.F16) else raw, qtype)
    assert_bits_equal(ours, ref.reshape(rows, cols))


def test_shape_is_ne_reversed(kvforge_bin, tmp_path):
    data = np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32)
    model = tmp_path / "shape.gguf"
    write_gguf(model, {"x": (QT.F32, data)})
    ours = dump(kvforge_bin, model, "x", tmp_path / "x.npy")
    assert ours.shape == (2, 3, 32)
    assert_bits_equal(ours, data)


def test_real_model_tensors_match_gguf_py(kvforge_bin, smollm2_gguf, tmp_path):
    reader = gguf.GGUFReader(str(smollm2_gguf))
    assert len(reader.tensors) > 0
    out = tmp_path / "t.npy"
    seen = set()
    for t in reader.tensors:
        seen.add(t.tensor_type)
        ours = dump(kvforge_bin, smollm2_gguf, t.name, out)
        ref = gguf.quants.dequantize(t.data, t.tensor_type)
        assert_bits_equal(ours, ref.reshape(ours.shape))
        out.unlink()
    assert {QT.F32, QT.Q4_1} <= seen


def test_inspect_json_matches_gguf_py(kvforge_bin, smollm2_gguf):
    reader = gguf.GGUFReader(str(smollm2_gguf))
    info = json.loads(run_kvforge(kvforge_bin, "inspect", "--json", smollm2_gguf).stdout)
    md = info["metadata"]
    assert md["general.architecture"]["value"] == reader.fields["general.architecture"].contents() == "llama"
    assert md["llama.block_count"]["value"] == reader.fields["llama.block_count"].contents()
    assert md["llama.attention.head_count_kv"]["value"] == reader.fields["llama.attention.head_count_kv"].contents()
    eps = reader.fields["llama.attention.layer_norm_rms_epsilon"].contents()
    assert np.float32(md["llama.attention.layer_norm_rms_epsilon"]["value"]) == np.float32(eps)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert md["tokenizer.ggml.tokens"]["length"] == len(tokens) == len(md["tokenizer.ggml.tokens"]["value"])
    assert md["tokenizer.ggml.tokens"]["value"][:100] == tokens[:100]
    assert set(md) == set(k for k in reader.fields if not k.startswith("GGUF."))
    assert len(info["tensors"]) == len(reader.tensors)
    for ours, ref in zip(sorted(info["tensors"], key=lambda t: t["name"]), sorted(reader.tensors, key=lambda t: t.name)):
        assert ours["name"] == ref.name
        assert ours["ne"] == [int(x) for x in ref.shape]
        assert ours["type"] == ref.tensor_type.name
        assert ours["bytes"] == int(ref.n_bytes)


def test_every_value_type_from_gguf_py(kvforge_bin, tmp_path):
    path = tmp_path / "kv.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("v.u8", 250)
    w.add_int8("v.i8", -120)
    w.add_uint16("v.u16", 65000)
    w.add_int16("v.i16", -32000)
    w.add_uint32("v.u32", 4_000_000_000)
    w.add_int32("v.i32", -2_000_000_000)
    w.add_uint64("v.u64", 2**64 - 1)
    w.add_int64("v.i64", -(2**63))
    w.add_float32("v.f32", 0.1)
    w.add_float64("v.f64", 0.1)
    w.add_bool("v.bool", True)
    w.add_string("v.str", "héllo\nworld")
    w.add_array("v.a_int", [1, 2, 3])
    w.add_array("v.a_float", [0.5, -1.25])
    w.add_array("v.a_str", ["a", "", "ç"])
    w.add_array("v.a_bool", [True, False])
    w.add_tensor("t", np.ones((2, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    md = json.loads(run_kvforge(kvforge_bin, "inspect", "--json", path).stdout)["metadata"]
    reader = gguf.GGUFReader(str(path))
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        ours = md[key]
        assert ours["type"] == {"UINT8": "u8", "INT8": "i8", "UINT16": "u16", "INT16": "i16", "UINT32": "u32",
                                "INT32": "i32", "UINT64": "u64", "INT64": "i64", "FLOAT32": "f32",
                                "FLOAT64": "f64", "BOOL": "bool", "STRING": "string",
                                "ARRAY": "array"}[field.types[0].name], key
        ref = field.contents()
        if field.types[0] == gguf.GGUFValueType.FLOAT32:
            assert np.float32(ours["value"]) == np.float32(ref), key
        elif field.types[0] == gguf.GGUFValueType.ARRAY and field.types[1] == gguf.GGUFValueType.FLOAT32:
            assert np.array_equal(np.float32(ours["value"]), np.float32(ref)), key
        else:
            assert ours["value"] == ref, key


def assert_clean_error(proc):
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_bad_files_fail_cleanly(kvforge_bin, smollm2_gguf, tmp_path):
    assert_clean_error(run_kvforge(kvforge_bin, "inspect", tmp_path / "missing.gguf", check=False))
    head = pathlib.Path(smollm2_gguf).read_bytes()[:1 << 20]
    for n in (0, 3, 10, 23, 100, 5000, len(head)):
        p = tmp_path / f"trunc{n}.gguf"
        p.write_bytes(head[:n])
        assert_clean_error(run_kvforge(kvforge_bin, "inspect", p, check=False))
    bad = tmp_path / "magic.gguf"
    bad.write_bytes(b"GGUX" + head[4:4096])
    assert_clean_error(run_kvforge(kvforge_bin, "inspect", bad, check=False))
    assert_clean_error(run_kvforge(kvforge_bin, "dump-tensor", smollm2_gguf, "no.such.tensor", "-o",
                                   tmp_path / "x.npy", check=False))
