"""Golden bytes of llama.cpp's quantizers for Finch's GGUF export tests.

Quantizes a few f32 tensors (normal, heavy-tailed, uniform, and one with edge cases: an all-zero
row, a constant block, values on the quantization grid, scattered zeros, tiny values, an outlier)
with ggml's own `ggml_quantize_chunk` (the path llama-quantize takes without an importance
matrix) to Q8_0, Q4_0, Q5_0, Q4_K and Q6_K, and writes inputs and outputs to
Tests/Fixtures/gguf-export/quants.safetensors (`x.<dist>` f32 [8, 512], `<type>.<dist>` u8).

    "$(Scripts/reference-venv.sh llama-cpp)"/bin/python Scripts/export/make_quant_fixtures.py
"""
import ctypes, glob, json, os, struct, sys
import numpy as np
import llama_cpp

lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
ggml = ctypes.CDLL(glob.glob(os.path.join(lib_dir, "libggml-base.so*"))[0])
ggml.ggml_quantize_chunk.restype = ctypes.c_size_t
ggml.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
ggml.ggml_quantize_init.argtypes = [ctypes.c_int]

TYPES = {"q8_0": (8, 32, 34), "q4_0": (2, 32, 18), "q5_0": (6, 32, 22), "q4_K": (12, 256, 144), "q6_K": (14, 256, 210)}
ROWS, COLS = 8, 512


def inputs():
    rng = np.random.default_rng(2026)
    out = {
        "normal": rng.standard_normal((ROWS, COLS)) * 0.02,
        "heavy": rng.standard_t(2, (ROWS, COLS)) * 0.01,
        "uniform": rng.uniform(-1, 1, (ROWS, COLS)),
    }
    e = rng.standard_normal((ROWS, COLS))
    e[0] = 0                                  # an all-zero row
    e[1, :256] = 1.5                          # constant blocks
    e[2] = np.round(e[2] * 4) / 4             # values on a grid
    e[3, ::7] = 0                             # scattered zeros
    e[4] *= 1e-20                             # tiny values
    e[5, 100] = 1000                          # an outlier
    e[6, :32] = -e[6, :32]
    out["edge"] = e
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        b = a.tobytes()
        header[name] = {"dtype": {np.float32: "F32", np.uint8: "U8"}[a.dtype.type], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    header["__metadata__"] = {"source": "ggml_quantize_chunk, llama-cpp-python " + llama_cpp.__version__}
    h = json.dumps(header, sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    tensors = {}
    for dist, x in inputs().items():
        tensors["x." + dist] = x
        for name, (t, block, size) in TYPES.items():
            ggml.ggml_quantize_init(t)
            out = np.zeros(ROWS * COLS // block * size, np.uint8)
            n = ggml.ggml_quantize_chunk(t, x.ctypes.data, out.ctypes.data, 0, ROWS, COLS, None)
            assert n == out.size, (name, n, out.size)
            tensors[f"{name}.{dist}"] = out
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "Tests", "Fixtures", "gguf-export", "quants.safetensors")
    write_safetensors(path, tensors)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
