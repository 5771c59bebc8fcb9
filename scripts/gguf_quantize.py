#!/usr/bin/env python3
"""A GGUF quantized again by llama.cpp's own quantizer (llama-cpp-python's
llama_model_quantize with allow_requantize: a quantized source is
dequantized and quantized again), as a user would make the files model
pages offer. Shared by tests/python/test_quant_variants.py and
scripts/bench_vs_llamacpp.py --variants.

    scripts/gguf_quantize.py SRC DST TYPE [--pure]

TYPE is a llama.cpp mix name (Q4_K_M, Q5_0, IQ4_XS, ...); --pure puts the
main type wherever it fits (llama.cpp's --pure). Run it with the venv's
Python (llama-cpp-python).
"""
import argparse
import ctypes


def quantize_gguf(src, dst, mix, pure=False, nthread=2):
    """Writes src quantized to the llama.cpp mix `mix` (e.g. "Q4_K_M") to dst."""
    import llama_cpp
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{mix.upper()}", None)
    if ftype is None:
        raise ValueError(f"llama.cpp has no mix named {mix}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.pure = pure
    params.nthread = nthread
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {mix} failed ({rc})")


def main():
    ap = argparse.ArgumentParser(description="requantize a GGUF with llama.cpp's quantizer")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("type", help="llama.cpp mix name: Q4_K_M, Q5_K_M, Q3_K_M, Q2_K, IQ4_XS, Q6_K, Q5_0, Q8_0, ...")
    ap.add_argument("--pure", action="store_true", help="the main type wherever it fits")
    a = ap.parse_args()
    try:
        quantize_gguf(a.src, a.dst, a.type, a.pure)
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
