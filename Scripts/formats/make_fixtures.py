#!/usr/bin/env python3
"""Generates the small golden files in Tests/Fixtures/formats/ used by FinchFormatsTests.

Run from the repository root with the project's venv (gguf, numpy, safetensors):

    "$(Scripts/reference-venv.sh)"/bin/python Scripts/formats/make_fixtures.py

Outputs (deterministic, seed 1234, < 1 MB in all):
  quants.gguf                    GGUF v3, one tensor per ggml type (+ 3-D and 1-D shapes)
  quants_expected.safetensors    float32 reference for each tensor of quants.gguf, computed
                                 by gguf-py's gguf.quants.dequantize on the bytes read back
                                 with gguf.GGUFReader (ints / F64: numpy astype(float32);
                                 Q8_K, which gguf-py cannot dequantize: ggml's formula d * q)
  metadata.gguf                  GGUF v3, general.alignment = 64, metadata of every type
                                 (nested arrays included), two tensors
  v2.gguf                        metadata.gguf with the version field set to 2 (v2 and v3
                                 share one layout; v3 only added big-endian files)
  all_dtypes.safetensors         every safetensors dtype, written by the `safetensors` package
  all_dtypes_expected.safetensors  their float32 values (numpy; BF16 / FP8 decoded by hand)
  sharded/                       a 2-shard checkpoint with model.safetensors.index.json
  smollm2_q4_1_digests.json      per-tensor digests of gguf-py's dequantization of
                                 ~/.cache/finch/models/SmolLM2-135M-Instruct.Q4_1.gguf
                                 (only when that file exists)
  metadata.json                  what made them (fixture_io.write_metadata: the script, pip freeze
                                 of the venv, the files)

Digest of a float32 array x (n values): with b = x.view(uint32) as uint64 and i = 0..n-1,
sum(b * (i * 2654435761 + 1)) modulo 2**64 (numpy's wrapping uint64 arithmetic).
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
import safetensors
from safetensors import serialize, TensorSpec
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "formats")
sys.path.insert(0, os.path.join(ROOT, "Scripts", "fixtures"))
from fixture_io import sha256, write_metadata  # noqa: E402
MODEL = os.path.expanduser("~/.cache/finch/models/SmolLM2-135M-Instruct.Q4_1.gguf")

rng = np.random.default_rng(1234)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_blocks(qtype, n_blocks, scale_fields):
    """Random bytes for n_blocks of qtype, with each (offset, kind) scale field set to a sane
    finite value (kind 'f16' signed, 'f16+' positive, 'f32')."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off, kind in scale_fields:
        if kind == "f32":
            v = rng.uniform(-0.05, 0.05, size=n_blocks).astype(np.float32)
            blocks[:, off:off + 4] = v.view(np.uint8).reshape(n_blocks, 4)
        else:
            lo = 0.0 if kind == "f16+" else -0.1
            v = rng.uniform(lo, 0.1, size=n_blocks).astype(np.float16)
            blocks[:, off:off + 2] = v.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def digest(x):
    b = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    i = np.arange(b.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(np.sum(b * (i * np.uint64(2654435761) + np.uint64(1)), dtype=np.uint64))


def make_quants():
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, arch="finchtest")
    normal = lambda *shape: (rng.standard_normal(shape) * 0.5).astype(np.float32)

    f32 = normal(3, 40)
    f32[0, :4] = [np.inf, -np.inf, 0.0, -0.0]
    w.add_tensor("f32", f32)

    specials = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfbff,
                         0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe01, 0x3c00, 0x3555, 0xc000], dtype=np.uint16)
    f16 = np.concatenate([specials, rng.integers(0, 65536, size=112, dtype=np.uint16)]).view(np.float16).reshape(2, 64)
    w.add_tensor("f16", f16)

    bf = normal(2, 64)
    bf[0, :6] = [np.nan, np.inf, -np.inf, 1e-40, -0.0, 3.0e38]
    w.add_tensor("bf16", gguf.quants.quantize(bf, T.BF16), raw_dtype=T.BF16)

    for name, qt in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1), ("q5_0", T.Q5_0),
                     ("q5_1", T.Q5_1), ("tq1_0", T.TQ1_0), ("tq2_0", T.TQ2_0), ("mxfp4", T.MXFP4)]:
        cols = 256 if GGML_QUANT_SIZES[qt][0] == 256 else 64
        x = normal(4, cols)
        x[1] *= 40.0  # a row with a large range
        x[2, :32] = 0.0  # an all-zero block
        w.add_tensor(name, gguf.quants.quantize(x, qt), raw_dtype=qt)

    # A 3-D and a 1-D quantized tensor (dims order check).
    w.add_tensor("q8_0_3d", gguf.quants.quantize(normal(2, 3, 64), T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("q4_0_1d", gguf.quants.quantize(normal(96), T.Q4_0), raw_dtype=T.Q4_0)

    # K-quants and IQ4: gguf-py cannot quantize these, so random blocks with sane scales.
    kq = [
        ("q2_K", T.Q2_K, [(80, "f16"), (82, "f16+")]),
        ("q3_K", T.Q3_K, [(108, "f16")]),
        ("q4_K", T.Q4_K, [(0, "f16"), (2, "f16+")]),
        ("q5_K", T.Q5_K, [(0, "f16"), (2, "f16+")]),
        ("q6_K", T.Q6_K, [(208, "f16")]),
        ("q8_K", T.Q8_K, [(0, "f32")]),
        ("iq4_nl", T.IQ4_NL, [(0, "f16")]),
        ("iq4_xs", T.IQ4_XS, [(0, "f16")]),
    ]
    for name, qt, fields in kq:
        block, tsize = GGML_QUANT_SIZES[qt]
        rows, cols = 2, 2 * max(block, 256)
        blocks = random_blocks(qt, rows * cols // block, fields)
        w.add_tensor(name, blocks.reshape(rows, cols // block * tsize), raw_dtype=qt)

    w.add_tensor("i8", rng.integers(-128, 128, size=(2, 5), dtype=np.int8))
    w.add_tensor("i16", rng.integers(-32768, 32768, size=(7,), dtype=np.int16))
    w.add_tensor("i32", np.array([0, 1, -1, 2**31 - 1, -2**31, 16777217, 123456789], dtype=np.int32))
    w.add_tensor("i64", np.array([0, -5, 2**53 + 1, -2**63, 2**63 - 1], dtype=np.int64))
    w.add_tensor("f64", np.array([0.1, -1e300, 1e-300, np.pi, np.nan, 65504.00000001], dtype=np.float64))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    expected = {}
    for t in r.tensors:
        if t.tensor_type in (T.I8, T.I16, T.I32, T.I64, T.F64):
            y = np.asarray(t.data).astype(np.float32)
        elif t.tensor_type == T.Q8_K:
            raw = np.asarray(t.data).reshape(-1, 292)
            d = raw[:, :4].copy().view(np.float32)
            q = raw[:, 4:260].copy().view(np.int8).astype(np.float32)
            y = (d * q).reshape(tuple(reversed([int(x) for x in t.shape])))
        else:
            y = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        y = np.ascontiguousarray(y, dtype=np.float32)
        assert y.shape == tuple(reversed([int(x) for x in t.shape])), (t.name, y.shape, t.shape)
        expected[t.name] = y
    save_file(expected, os.path.join(OUT, "quants_expected.safetensors"))


def make_metadata():
    path = os.path.join(OUT, "metadata.gguf")
    V = gguf.GGUFValueType
    w = gguf.GGUFWriter(path, arch="finchtest")
    w.add_custom_alignment(64)  # sets general.alignment and pads the data to it
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 4000000000)
    w.add_int32("t.i32", -2000000000)
    w.add_float32("t.f32", 0.1)
    w.add_bool("t.bool_true", True)
    w.add_bool("t.bool_false", False)
    w.add_string("t.str", "h\u00e9llo \u2713 \U0001f426")
    w.add_key_value("t.str_empty", "", V.STRING)  # add_string() skips empty strings
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -2**63)
    w.add_float64("t.f64", -1.0 / 3.0)
    w.add_key_value("t.arr_u8", [1, 2, 255], V.ARRAY, sub_type=V.UINT8)
    w.add_key_value("t.arr_i8", [-1, 0, 127], V.ARRAY, sub_type=V.INT8)
    w.add_key_value("t.arr_u16", [65535], V.ARRAY, sub_type=V.UINT16)
    w.add_key_value("t.arr_i16", [-2, 2], V.ARRAY, sub_type=V.INT16)
    w.add_key_value("t.arr_u32", [7, 8, 9], V.ARRAY, sub_type=V.UINT32)
    w.add_key_value("t.arr_i32", [-7, 8], V.ARRAY, sub_type=V.INT32)
    w.add_key_value("t.arr_u64", [2**64 - 1, 0], V.ARRAY, sub_type=V.UINT64)
    w.add_key_value("t.arr_i64", [-2**63, 5], V.ARRAY, sub_type=V.INT64)
    w.add_key_value("t.arr_f32", [0.5, -1.25, 3.0e38], V.ARRAY, sub_type=V.FLOAT32)
    w.add_key_value("t.arr_f64", [0.1, -2.5], V.ARRAY, sub_type=V.FLOAT64)
    w.add_key_value("t.arr_bool", [True, False, True], V.ARRAY, sub_type=V.BOOL)
    w.add_array("t.arr_str", ["a", "", "\u00fcn\u00efc\u00f6d\u00e9", "x y"])
    w.add_array("t.arr_nested_int", [[1, 2, 3], [4], [5, 6]])
    w.add_array("t.arr_nested_str", [["a", "b"], ["c"]])
    w.add_array("t.arr_nested3", [[[1], [2, 3]], [[4]]])
    w.add_tensor("weight", np.arange(24, dtype=np.float32).reshape(4, 6))
    w.add_tensor("bias", np.array([1.5, -2.5, 3.25], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    assert r.alignment == 64 and r.data_offset % 64 == 0
    assert r.fields["t.str_empty"].contents() == ""
    assert np.array_equal(r.tensors[0].data, np.arange(24, dtype=np.float32).reshape(4, 6))
    assert np.array_equal(r.tensors[1].data, [1.5, -2.5, 3.25])

    with open(path, "rb") as f:
        data = bytearray(f.read())
    assert data[4:8] == struct.pack("<I", 3)
    data[4:8] = struct.pack("<I", 2)
    with open(os.path.join(OUT, "v2.gguf"), "wb") as f:
        f.write(data)
    r2 = gguf.GGUFReader(os.path.join(OUT, "v2.gguf"))
    assert int(r2.fields["GGUF.version"].parts[0][0]) == 2


def fp8_e4m3fn_to_f32(b):
    b = b.astype(np.uint32)
    s = np.where(b & 0x80, -1.0, 1.0)
    e = (b >> 3) & 0xF
    m = (b & 7).astype(np.float64)
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8) * 2.0 ** (e.astype(np.float64) - 7))
    v = np.where((e == 15) & ((b & 7) == 7), np.nan, v)
    # copysign keeps the sign of NaN too (0xff -> 0xffc00000), as PyTorch's conversion does.
    return np.copysign(v, s).astype(np.float32)


def fp8_e5m2_to_f32(b):
    return (b.astype(np.uint16) << 8).view(np.float16).astype(np.float32)


def make_safetensors():
    keep = []
    specs = {}
    expected = {}

    def add(name, dtype_name, raw, shape, as_f32):
        raw = np.ascontiguousarray(raw)
        keep.append(raw)
        specs[name] = TensorSpec(dtype=dtype_name, shape=list(shape), data_ptr=raw.ctypes.data, data_len=raw.nbytes)
        expected[name] = np.ascontiguousarray(as_f32, dtype=np.float32).reshape(shape)

    f64 = np.array([[0.1, -1e300, 1e-300], [np.pi, np.inf, 2.0 ** 24 + 1]], dtype=np.float64)
    add("t_f64", "float64", f64, f64.shape, f64.astype(np.float32))
    f32 = rng.standard_normal((3, 4)).astype(np.float32)
    add("t_f32", "float32", f32, f32.shape, f32)
    f16 = rng.integers(0, 65536, size=(2, 8), dtype=np.uint16).view(np.float16)
    add("t_f16", "float16", f16, f16.shape, f16.astype(np.float32))
    bf = rng.integers(0, 65536, size=(8,), dtype=np.uint16)
    add("t_bf16", "bfloat16", bf, bf.shape, (bf.astype(np.uint32) << 16).view(np.float32))
    i64 = np.array([0, -1, 2**53 + 1, -2**63, 2**63 - 1], dtype=np.int64)
    add("t_i64", "int64", i64, i64.shape, i64.astype(np.float32))
    i32 = np.array([[1, -2], [2**31 - 1, -2**31]], dtype=np.int32)
    add("t_i32", "int32", i32, i32.shape, i32.astype(np.float32))
    i16 = np.array([-32768, 32767, 0], dtype=np.int16)
    add("t_i16", "int16", i16, i16.shape, i16.astype(np.float32))
    i8 = np.array([-128, 127, 0, -1], dtype=np.int8)
    add("t_i8", "int8", i8, i8.shape, i8.astype(np.float32))
    u64 = np.array([0, 2**64 - 1, 2**24 + 1], dtype=np.uint64)
    add("t_u64", "uint64", u64, u64.shape, u64.astype(np.float32))
    u32 = np.array([0, 2**32 - 1], dtype=np.uint32)
    add("t_u32", "uint32", u32, u32.shape, u32.astype(np.float32))
    u16 = np.array([0, 65535, 1234], dtype=np.uint16)
    add("t_u16", "uint16", u16, u16.shape, u16.astype(np.float32))
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    add("t_u8", "uint8", u8, u8.shape, u8.astype(np.float32))
    bl = np.array([True, False, True], dtype=np.bool_)
    add("t_bool", "bool", bl, bl.shape, bl.astype(np.float32))
    e4 = np.arange(256, dtype=np.uint8)
    add("t_f8_e4m3", "float8_e4m3fn", e4, e4.shape, fp8_e4m3fn_to_f32(e4))
    e5 = np.arange(256, dtype=np.uint8)
    add("t_f8_e5m2", "float8_e5m2", e5, e5.shape, fp8_e5m2_to_f32(e5))
    sc = np.array(2.5, dtype=np.float32)
    add("t_scalar", "float32", sc, (), sc)
    em = np.zeros((0, 3), dtype=np.float32)
    add("t_empty", "float32", em, (0, 3), em)

    with open(os.path.join(OUT, "all_dtypes.safetensors"), "wb") as f:
        f.write(bytes(serialize(specs, metadata={"format": "pt"})))
    save_file(expected, os.path.join(OUT, "all_dtypes_expected.safetensors"))

    d = os.path.join(OUT, "sharded")
    os.makedirs(d, exist_ok=True)
    a = {"model.embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
         "model.layers.0.w": np.full((2, 2), 0.5, dtype=np.float16)}
    b = {"model.layers.1.w": np.array([1, 2, 3], dtype=np.int32),
         "lm_head.weight": np.eye(2, dtype=np.float32)}
    save_file(a, os.path.join(d, "model-00001-of-00002.safetensors"), metadata={"format": "pt"})
    save_file(b, os.path.join(d, "model-00002-of-00002.safetensors"), metadata={"format": "pt"})
    weight_map = {}
    for k in a:
        weight_map[k] = "model-00001-of-00002.safetensors"
    for k in b:
        weight_map[k] = "model-00002-of-00002.safetensors"
    total = sum(v.nbytes for v in list(a.values()) + list(b.values()))
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def make_model_digests():
    if not os.path.exists(MODEL):
        print(f"skipping model digests: {MODEL} not found")
        return
    r = gguf.GGUFReader(MODEL)
    out = []
    for t in r.tensors:
        y = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        y = np.ascontiguousarray(y, dtype=np.float32)
        out.append({"name": t.name, "type": t.tensor_type.name,
                    "dims": [int(x) for x in t.shape], "digest": str(digest(y)),
                    "first": [float(v) for v in y.reshape(-1)[:4]]})
    with open(os.path.join(OUT, "smollm2_q4_1_digests.json"), "w") as f:
        json.dump({"file": os.path.basename(MODEL), "size": os.path.getsize(MODEL),
                   "tensors": out}, f, indent=0)


def main():
    os.makedirs(OUT, exist_ok=True)
    print("gguf", getattr(gguf, "__version__", "?"), "safetensors", safetensors.__version__, "numpy", np.__version__)
    make_quants()
    make_metadata()
    make_safetensors()
    make_model_digests()
    total, files = 0, []
    for dp, _, fs in os.walk(OUT):
        for fn in fs:
            os.chmod(os.path.join(dp, fn), 0o644)  # safetensors' save_file creates 0600 files
            total += os.path.getsize(os.path.join(dp, fn))
            files.append(os.path.relpath(os.path.join(dp, fn), OUT))
    model = {"model": os.path.basename(MODEL), "model_sha256": sha256(MODEL)} if os.path.exists(MODEL) else {}
    write_metadata(OUT, __file__, [f for f in files if f != "metadata.json"], **model)
    print(f"wrote fixtures to {OUT}: {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
