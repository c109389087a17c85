# Sourced by the benchmark scripts (after `cd` to the repository root).
#   source Scripts/bench/common.sh            the side-by-side ones: Scripts/reference/env.sh (VENV, REF, GGUF,
#                                             WORK and SMOLLM2_F32, transformers' f32 copy of SmolLM2 that both
#                                             engines load; VENV may be set, else the reference venv of
#                                             Scripts/reference-venv.sh), then builds Finch
#   FINCH_BENCH_NO_REF=1 source ...           Finch alone: builds Finch only
# Then `bench_start NAME` before the first measurement, and every JSON line through `raw KEY=VALUE...`.
if [ "${FINCH_BENCH_NO_REF:-0}" != 1 ]; then source Scripts/reference/env.sh; fi
if [ "${FINCH_BENCH_NO_BUILD:-0}" != 1 ]; then swift build -c release -Xswiftc -enable-testing --product finch >&2; fi

# bench_start NAME [KEY=VALUE...]: the raw file OUT (FINCH_BENCH_OUT, else Scripts/results/bench/NAME-DATE.jsonl) and
# this run's id RUN_ID (every line of the run carries "run": RUN_ID; the summary reads them back);
# appends the quiet-machine check (refuses a busy machine unless FINCH_BENCH_ALLOW_BUSY=1) and the
# machine line (commit, CPU, ISA flags, threads, OpenBLAS core, Finch's bf16 path, tool versions; the KEY=VALUE too).
bench_start() {
  OUT="${FINCH_BENCH_OUT:-Scripts/results/bench/$1-$(date -u +%Y-%m-%d).jsonl}"
  RUN_ID="$1-$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$(dirname "$OUT")"
  python3 Scripts/bench/rawline.py quiet --out "$OUT" run="$RUN_ID" >&2
  python3 Scripts/bench/rawline.py machine "$OUT" ${VENV:+--venv "$VENV"} run="$RUN_ID" script="$0" "${@:2}" >&2
  echo "# raw lines: $OUT (run $RUN_ID)" >&2
}

# raw KEY=VALUE...: tags the JSON lines on stdin with the run and the keys, appends them to OUT, prints them.
raw() { python3 Scripts/bench/rawline.py tag "$OUT" run="$RUN_ID" "$@"; }

# rows: this run's lines of OUT (for the summary).
rows() { python3 Scripts/bench/rawline.py rows "$OUT" "$RUN_ID"; }

# The tensor dtypes of each side, recorded in its lines (Finch's from DecoderModel+Load.swift:
# linears and the embedding / tied head in --dtype, norms and LoRA A/B in f32; with --qlora the block
# linears in NF4 with products in --dtype, the rest as without).
finch_dtypes() {  # DTYPE [qlora|blocks|-] [int8]: the base's storage and, with int8, its products
  local lin="$1" emb="$1"
  case "${2:-}" in
    qlora) lin="nf4 (products in $1)" ;;
    blocks) lin="GGUF blocks (products in $1)"; emb="GGUF blocks" ;;
  esac
  [ "${3:-}" = int8 ] && lin="${lin%% (*} (int8 products)"
  echo "tensor_dtypes={\"linears\": \"$lin\", \"embedding_head\": \"$emb\", \"norms\": \"f32\", \"lora\": \"f32\", \"autocast\": false}"
}
