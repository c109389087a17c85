"""Checks Finch's T5 GGUF export against llama.cpp (llama-cpp-python) and transformers, and writes
the fixture T5GGUFTests reads (Tests/Fixtures/tiny-t5/v1_1/llamacpp-gguf.json).

Run by Scripts/checks/export/t5_llamacpp_check.sh, in two steps, each in its own venv:

  transformers MODEL OUT   (reference venv) transformers' references on MODEL, the tiny T5 v1.1 fixture
                           with relative_attention_max_distance 128 (llama.cpp fixes that distance): for
                           each source of the fixture's expected.json, the encoder output, greedy tokens (at
                           most 32, stopping after </s>) and the teacher-forced decoder logits of its target.
                           Writes OUT/transformers.json. With a llama.cpp source tree (LLAMA_CPP_SRC), also a
                           SentencePiece model built from tokenizer.json (its pieces, scores, types and
                           charsmap) beside a copy of MODEL, for llama.cpp's own converter.
  llamacpp OUT [FIXTURE]   (llama-cpp venv) on Finch's finch-<type>.gguf (f32, f16, q8_0, q4_0):
    1. llama-quantize's Q8_0 / Q4_0 of finch-f32.gguf: every tensor's type and bytes equal Finch's file's.
    2. llama.cpp encodes each source (llama_encode) and decodes: its encoder output and its teacher-forced
       logits against transformers' (max |diff|), its greedy tokens against transformers'. f32 must give
       the same greedy tokens and logits within F32_BOUND; the other types are reported (f16 rounds the
       activations too, the quantized types round them to 8-bit blocks).
    3. Its tokenizer (llama.cpp's UGM reading Finch's t5 vocabulary, special tokens matched in text) on tokens.json: the
       ids transformers' tokenizer gives (with </s>).
    4. With OUT/convert-f32.gguf (llama.cpp's convert_hf_to_gguf.py on the same checkpoint): the same
       tensor names, shapes and types, the same f32 values, and the metadata keys each file has alone.
  FIXTURE: writes what T5GGUFTests compares Finch with: llama.cpp's greedy tokens and teacher-forced
  logits per type, the measured differences, the versions.

Prints one JSON line per check and exits non-zero when one fails.
"""
import json, os, sys
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXPECTED = os.path.join(ROOT, "Tests", "Fixtures", "tiny-t5", "v1_1", "expected.json")
TOKENS = os.path.join(ROOT, "Tests", "Fixtures", "tiny-t5", "tokens.json")
TYPES = ["f32", "f16", "q8_0", "q4_0"]
STEPS = 32
# llama.cpp on the f32 file vs transformers: ggml's GELU rounds its f32 input to f16 and reads a table
# (GGML_GELU_FP16); bound about 3x the measured difference (see the fixture's measured fields).
F32_BOUND = 2e-3


def sources():
    return [p["source"] for p in json.load(open(EXPECTED))["pairs"]], [p["target"] for p in json.load(open(EXPECTED))["pairs"]]


def transformers_step(model_dir, out):
    import torch, transformers
    model = transformers.T5ForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    start = model.config.decoder_start_token_id
    srcs, tgts = sources()
    rows = []
    with torch.no_grad():
        for s, t in zip(srcs, tgts):
            ids = torch.tensor([s])
            enc = model.encoder(input_ids=ids).last_hidden_state[0]
            dec_in = torch.tensor([[start] + t[:-1]])
            logits = model(input_ids=ids, decoder_input_ids=dec_in).logits[0]
            g = model.generate(ids, max_new_tokens=STEPS, do_sample=False, num_beams=1)[0].tolist()[1:]
            rows.append({"encoder": enc.tolist(), "logits": logits.tolist(), "greedy": g})
    json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "rows": rows}, open(os.path.join(out, "transformers.json"), "w"))
    src = os.environ.get("LLAMA_CPP_SRC")
    if src:
        write_spiece(model_dir, os.path.join(out, "convert-model"))


def write_spiece(model_dir, dst):
    """A copy of model_dir with spiece.model, the SentencePiece model tokenizer.json describes
    (what llama.cpp's converter reads: pieces, scores, types, the charsmap)."""
    import base64, shutil
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    from sentencepiece import sentencepiece_model_pb2 as pb
    shutil.copytree(model_dir, dst, dirs_exist_ok=True)
    tj = json.load(open(os.path.join(model_dir, "tokenizer.json")))
    m = pb.ModelProto()
    m.trainer_spec.model_type = 1  # UNIGRAM
    m.trainer_spec.unk_id, m.trainer_spec.pad_id, m.trainer_spec.eos_id, m.trainer_spec.bos_id = 2, 0, 1, -1
    m.normalizer_spec.name = "nmt_nfkc"
    m.normalizer_spec.precompiled_charsmap = base64.b64decode(tj["normalizer"]["precompiled_charsmap"])
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = True
    for i, (piece, score) in enumerate(tj["model"]["vocab"]):
        p = m.pieces.add()
        p.piece, p.score = piece, score
        p.type = 2 if i == tj["model"]["unk_id"] else 3 if piece in ("<pad>", "</s>") else 1
    open(os.path.join(dst, "spiece.model"), "wb").write(m.SerializeToString())
    # The converter reads added tokens (T5's <extra_id_N>) from added_tokens.json.
    added = {a["content"]: a["id"] for a in tj["added_tokens"] if a["id"] >= len(tj["model"]["vocab"])}
    json.dump(added, open(os.path.join(dst, "added_tokens.json"), "w"))


class T5Runner:
    """llama.cpp's encoder-decoder API through llama-cpp-python's bindings."""

    def __init__(self, path):
        import llama_cpp
        self.ll = llama_cpp
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mp)
        assert self.model, f"llama.cpp cannot load {path}"
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.n_embd = llama_cpp.llama_model_n_embd(self.model)
        self.start = llama_cpp.llama_model_decoder_start_token(self.model)
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch = 256, 256, 256
        cp.n_threads = cp.n_threads_batch = os.cpu_count()
        cp.type_k = cp.type_v = 0  # f32 cache
        cp.embeddings = True
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        assert self.ctx, "llama.cpp cannot make a context"

    def batch(self, ids, pos0, logits_all):
        b = self.ll.llama_batch_init(len(ids), 0, 1)
        b.n_tokens = len(ids)
        for i, t in enumerate(ids):
            b.token[i] = t
            b.pos[i] = pos0 + i
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.logits[i] = 1 if logits_all or i == len(ids) - 1 else 0
        return b

    def encode(self, src):
        self.ll.llama_memory_clear(self.ll.llama_get_memory(self.ctx), True)
        b = self.batch(src, 0, True)
        rc = self.ll.llama_encode(self.ctx, b)
        self.ll.llama_batch_free(b)
        assert rc == 0, f"llama_encode returned {rc}"
        e = self.ll.llama_get_embeddings(self.ctx)
        return np.ctypeslib.as_array(e, shape=(len(src) * self.n_embd,)).reshape(len(src), self.n_embd).copy() if e else None

    def decode(self, ids, pos0, logits_all):
        b = self.batch(ids, pos0, logits_all)
        rc = self.ll.llama_decode(self.ctx, b)
        self.ll.llama_batch_free(b)
        assert rc == 0, f"llama_decode returned {rc}"
        rows = range(len(ids)) if logits_all else [len(ids) - 1]
        return np.array([np.ctypeslib.as_array(self.ll.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)) for i in rows])

    def teacher_forced(self, src, target):
        enc = self.encode(src)
        return enc, self.decode([self.start] + target[:-1], 0, True)

    def greedy(self, src, eos=1):
        self.encode(src)
        out, tok = [], self.start
        for step in range(STEPS):
            tok = int(self.decode([tok], step, False)[0].argmax())
            out.append(tok)
            if tok == eos:
                break
        return out

    def tokenize(self, text):
        buf = (self.ll.llama_token * 4096)()
        n = self.ll.llama_tokenize(self.vocab, text.encode(), len(text.encode()), buf, 4096, True, True)
        return list(buf[:n])


def gguf_tensors(path):
    from gguf import GGUFReader
    r = GGUFReader(path)
    return r, {t.name: (int(t.tensor_type), [int(x) for x in t.shape], bytes(t.data.tobytes())) for t in r.tensors}


def llamacpp_step(d, fixture):
    import llama_cpp, gguf
    failed = False
    def report(ok, **kw):
        nonlocal failed
        failed |= not ok
        print(json.dumps({**kw, "ok": ok}), flush=True)
    ref = json.load(open(os.path.join(d, "transformers.json")))
    srcs, tgts = sources()
    # 1. llama-quantize.
    for t, ftype in (("q8_0", 7), ("q4_0", 2)):
        q = os.path.join(d, f"llama-quantize-{t}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype, params.nthread = ftype, os.cpu_count()
        rc = llama_cpp.llama_model_quantize(os.path.join(d, "finch-f32.gguf").encode(), q.encode(), params)
        a, b = gguf_tensors(os.path.join(d, f"finch-{t}.gguf"))[1], gguf_tensors(q)[1]
        same = sum(1 for k in b if k in a and a[k] == b[k])
        report(rc == 0 and same == len(a) == len(b), check="llama-quantize bytes", type=t, tensors=len(b), identical=same,
               types={k: v[0] for k, v in b.items() if k not in a or a[k] != v})
    # 2. Encoder, logits, greedy per type.
    recorded = {}
    for t in TYPES:
        r = T5Runner(os.path.join(d, f"finch-{t}.gguf"))
        enc_diff, logit_diff, top1, greedy = 0.0, 0.0, [], []
        logits_rows = []
        for i, (s, tg) in enumerate(zip(srcs, tgts)):
            enc, lg = r.teacher_forced(s, tg)
            if enc is not None:
                enc_diff = max(enc_diff, float(np.abs(enc - np.array(ref["rows"][i]["encoder"])).max()))
            want = np.array(ref["rows"][i]["logits"])
            logit_diff = max(logit_diff, float(np.abs(lg - want).max()))
            top1 += list(lg.argmax(1) == want.argmax(1))
            logits_rows.append(lg.tolist())
            greedy.append(r.greedy(s))
        same_greedy = [g == ref["rows"][i]["greedy"] for i, g in enumerate(greedy)]
        ok = (all(same_greedy) and logit_diff < F32_BOUND) if t == "f32" else True
        report(ok, check="llama.cpp vs transformers", type=t, encoder_max_abs_diff=enc_diff, logits_max_abs_diff=logit_diff,
               teacher_forced_top1_agreement=float(np.mean(top1)), greedy_equal=same_greedy,
               max_abs_logit=float(max(np.abs(np.array(x)).max() for x in logits_rows)))
        # Logits are recorded for f32 and q8_0 (7 significant digits), greedy tokens for every type.
        keep = [[[float(f"{x:.7g}") for x in row] for row in rows] for rows in logits_rows] if t in ("f32", "q8_0") else None
        recorded[t] = {"greedy": greedy, "logits": keep, "measured": {
            "encoder_max_abs_diff_vs_transformers": enc_diff, "logits_max_abs_diff_vs_transformers": logit_diff,
            "greedy_equal_transformers": same_greedy}}
        if t == "f32":
            # 3. The tokenizer llama.cpp builds from Finch's t5 vocabulary.
            tj = json.load(open(TOKENS))
            got = [r.tokenize(s) for s in tj["strings"]]
            same = [g == w for g, w in zip(got, tj["ids"])]
            bad = [{"string": s, "llama_cpp": g, "transformers": w} for s, g, w in zip(tj["strings"], got, tj["ids"]) if g != w][:5]
            report(all(same), check="llama.cpp tokenizer vs transformers", strings=len(same), equal=sum(same), first_differences=bad)
            recorded["tokenizer"] = {"strings": len(same), "equal": sum(same)}
    # 4. llama.cpp's own converter.
    conv = os.path.join(d, "convert-f32.gguf")
    if os.path.exists(conv):
        ra, a = gguf_tensors(os.path.join(d, "finch-f32.gguf"))
        rb, b = gguf_tensors(conv)
        layout = {k: (v[0], v[1]) for k, v in a.items()} == {k: (v[0], v[1]) for k, v in b.items()}
        values = [k for k in b if k in a and a[k][2] != b[k][2]]
        ka, kb = set(ra.fields), set(rb.fields)
        skip = {"general.name", "general.size_label", "general.basename", "general.finetune", "general.version", "GGUF.version",
                "GGUF.tensor_count", "GGUF.kv_count"}
        report(layout and not values, check="Finch vs llama.cpp's converter (f32)", tensors=len(b), same_names_shapes_types=layout,
               values_differ=values, only_finch=sorted(ka - kb - skip), only_converter=sorted(kb - ka - skip),
               tensors_only_finch=sorted(set(a) - set(b)), tensors_only_converter=sorted(set(b) - set(a)))
        differ = []
        for k in sorted((ka & kb) - skip):
            fa, fb = ra.fields[k], rb.fields[k]
            va = fa.contents() if hasattr(fa, "contents") else None
            vb = fb.contents() if hasattr(fb, "contents") else None
            if va != vb:
                differ.append(k)
        print(json.dumps({"check": "metadata values that differ from the converter's (reported)", "keys": differ}), flush=True)
    if fixture:
        from importlib.metadata import version
        out = {"what": "llama.cpp (llama-cpp-python) on Finch's T5 GGUF exports of Tests/Fixtures/tiny-t5/v1_1/hf with "
                       "relative_attention_max_distance set to 128 (llama.cpp's fixed distance): per type, for each source of "
                       "expected.json, greedy tokens (at most 32, stopping after </s>) and the teacher-forced decoder logits of "
                       "its target ([start] + target[:-1]); measured differences from transformers on the same checkpoint",
               "config_edits": {"relative_attention_max_distance": 128}, "steps": STEPS,
               "llama_cpp_python": version("llama-cpp-python"), "gguf": version("gguf"), "numpy": np.__version__,
               "transformers": ref["transformers"], "torch": ref["torch"],
               "command": "Scripts/checks/export/t5_llamacpp_check.sh --write-fixture", "types": recorded}
        with open(fixture, "w") as f:
            json.dump(out, f)
            f.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1] == "transformers":
        transformers_step(sys.argv[2], sys.argv[3])
    else:
        sys.exit(llamacpp_step(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
