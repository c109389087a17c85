#!/usr/bin/env bash
# Crash safety: kills `finch train` with SIGKILL at KILLS random moments (during steps, during the
# checkpoint written after every step, during the final save) and resumes the run each time
# (`--resume` of the run directory: its last whole checkpoint). The run that was killed must end
# with the uninterrupted run's losses and a byte-identical adapter. It also counts where the kills
# landed, from what each left in the run directory before the next run cleaned it: a hidden
# `.checkpoint-N.tmp-*` (inside a checkpoint write), `.checkpoint-N.deleting` / `.old-*` (inside a
# rotation or replacement), a `.adapter_model.safetensors.tmp-*` (inside the final save). It fails
# unless at least half the kills landed on a live run and at least one landed inside a checkpoint
# write, so that a pass means what it says.
#   Scripts/hardening/kill_test.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/../.."
KILLS="${1:-30}"
FINCH="${FINCH:-.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release --product finch >&2
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
args=(train --model Tests/Fixtures/tiny-llama/hf --data Examples/brindlewick.jsonl --batch-size 2 --max-steps 800
      --save-steps 1 --save-total-limit 2 --logging-steps 1 --seed 5 --learning-rate 5e-4 --lora-dropout 0.1)
OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" --output "$OUT/whole" >/dev/null 2>&1
killed=0; finished_early=0; in_checkpoint=0; in_rotation=0; in_final_save=0
for k in $(seq 1 "$KILLS"); do
  resume=()
  ls "$OUT/broken"/checkpoint-* >/dev/null 2>&1 && resume=(--resume "$OUT/broken")
  before=$(stat -c %s "$OUT/broken/metrics.jsonl" 2>/dev/null || echo 0)
  OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" --output "$OUT/broken" "${resume[@]}" >/dev/null 2>&1 &
  pid=$!
  # Once the run is stepping (its metrics.jsonl grows: loading took ~0.1 s, or several on a busy machine,
  # where a fixed delay then killed it while loading, every time), a random moment up to 0.6 s later (a step
  # ~10 ms, each followed by a checkpoint).
  for _ in $(seq 1 200); do
    [ "$(stat -c %s "$OUT/broken/metrics.jsonl" 2>/dev/null || echo 0)" -gt "$before" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.6 * r / 32767 }')"
  if kill -9 "$pid" 2>/dev/null; then killed=$((killed + 1)); else finished_early=$((finished_early + 1)); fi
  wait "$pid" 2>/dev/null || true
  ls -a "$OUT/broken" 2>/dev/null | grep -q '^\.checkpoint-[0-9]*\.tmp-' && in_checkpoint=$((in_checkpoint + 1))
  ls -a "$OUT/broken" 2>/dev/null | grep -q '^\.checkpoint-[0-9]*\.\(deleting\|old\)$' && in_rotation=$((in_rotation + 1))
  ls -a "$OUT/broken" 2>/dev/null | grep -q '^\.adapter_model\.safetensors\.tmp-' && in_final_save=$((in_final_save + 1))
  # Never a half checkpoint in view: every checkpoint-N holds all four files.
  for c in "$OUT/broken"/checkpoint-*; do
    [ -e "$c" ] || continue
    for f in adapter_config.json adapter_model.safetensors optimizer.safetensors trainer_state.json; do
      [ -s "$c/$f" ] || { echo "FAIL: $c lacks $f after kill $k" >&2; exit 1; }
    done
  done
  [ -f "$OUT/broken/adapter_model.safetensors" ] && break
done
resume=()
ls "$OUT/broken"/checkpoint-* >/dev/null 2>&1 && resume=(--resume "$OUT/broken")
OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" --output "$OUT/broken" "${resume[@]}" >/dev/null 2>&1 || true
same_adapter=false; cmp -s "$OUT/whole/adapter_model.safetensors" "$OUT/broken/adapter_model.safetensors" && same_adapter=true
losses() { python3 -c "import json,sys; print([json.loads(l)['loss'] for l in open(sys.argv[1]) if '\"lr\"' in l])" "$1"; }
same_losses=false; [ "$(losses "$OUT/whole/metrics.jsonl")" = "$(losses "$OUT/broken/metrics.jsonl")" ] && same_losses=true
enough_kills=false; [ $((2 * killed)) -ge "$KILLS" ] && enough_kills=true
hit_checkpoint=false; [ "$in_checkpoint" -ge 1 ] && hit_checkpoint=true
ok=false; $same_adapter && $same_losses && $enough_kills && $hit_checkpoint && ok=true
echo "{\"check\": \"SIGKILL at random moments, resumed each time\", \"kills_asked\": $KILLS, \"kills\": $killed, \"runs_finished_before_the_kill\": $finished_early, \"kills_inside_checkpoint_write\": $in_checkpoint, \"kills_inside_rotation\": $in_rotation, \"kills_inside_final_save\": $in_final_save, \"losses_equal\": $same_losses, \"adapter_identical\": $same_adapter, \"ok\": $ok}"
$enough_kills || echo "FAIL: only $killed of $KILLS kills landed on a live run" >&2
$hit_checkpoint || echo "FAIL: no kill landed inside a checkpoint write; the test did not test what it claims (rerun, or raise KILLS)" >&2
$ok
