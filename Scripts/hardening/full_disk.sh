#!/usr/bin/env bash
# A full disk during training: the run directory on a 1 MiB tmpfs fills while checkpoints are
# written after every step. `finch train` must stop with an error that says so and exit non-zero,
# leave no partial checkpoint, keep the earlier checkpoints whole, and a copy of the run on a
# disk with room must resume from the last one. Needs root (mount).
#   Scripts/hardening/full_disk.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
FINCH="${FINCH:-.build/release/finch}"
[ -x "$FINCH" ] || swift build -c release --product finch >&2
# Not root: exit 77 (skipped), which Scripts/test.sh turns into a failure under CI.
[ "$(id -u)" = 0 ] || { echo "full-disk check NOT RUN: it needs root to mount a tmpfs" >&2; exit 77; }
WORK="$(mktemp -d)"; SMALL="$WORK/small"; mkdir -p "$SMALL"
mount -t tmpfs -o size=1m tmpfs "$SMALL"
trap 'umount "$SMALL" 2>/dev/null || true; rm -rf "$WORK"' EXIT
args=(train --model Tests/Fixtures/tiny-llama/hf --data Examples/brindlewick.jsonl --batch-size 2 --max-steps 400
      --save-steps 1 --logging-steps 1 --seed 5 --learning-rate 5e-4)
set +e
OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" --output "$SMALL/run" > "$WORK/out.txt" 2> "$WORK/err.txt"
code=$?
set -e
message="$(grep -m1 "the checkpoint could not be written" "$WORK/err.txt" || true)"
partial="$(ls -a "$SMALL/run" | grep -c '\.partial\|\.tmp' || true)"
checkpoints=$(ls -d "$SMALL/run"/checkpoint-* 2>/dev/null | wc -l)
last="$(ls -d "$SMALL/run"/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -1)"
whole=true
for c in "$SMALL/run"/checkpoint-*; do
  for f in adapter_config.json adapter_model.safetensors optimizer.safetensors trainer_state.json; do [ -s "$c/$f" ] || whole=false; done
done
# The run resumes from its last checkpoint once there is room.
cp -r "$SMALL/run" "$WORK/room"
resumed=false
OMP_NUM_THREADS=1 "$FINCH" "${args[@]}" --max-steps "$(( $(basename "$last" | cut -d- -f2) + 3 ))" --output "$WORK/room" --resume "$WORK/room" >/dev/null 2>&1 \
  && [ -f "$WORK/room/adapter_model.safetensors" ] && resumed=true
# The error must say what happened (no space), at which step, and name the last whole checkpoint.
clear=false
case "$message" in
  *"step "[0-9]*": the checkpoint could not be written ("*"No space left on device"*"). The last whole checkpoint is $last; "*) clear=true ;;
esac
ok=false
[ "$code" != 0 ] && $clear && [ "$partial" = 0 ] && [ "$checkpoints" -gt 0 ] && $whole && $resumed && ok=true
python3 -c "import json,sys; print(json.dumps({'check': 'disk full while checkpointing (1 MiB tmpfs)', 'exit_code': int(sys.argv[1]), 'message': sys.argv[2], 'checkpoints_kept': int(sys.argv[3]), 'all_whole': sys.argv[4] == 'true', 'partial_left': int(sys.argv[5]), 'resumed_elsewhere': sys.argv[6] == 'true', 'error_names_cause_step_and_last_checkpoint': sys.argv[8] == 'true', 'ok': sys.argv[7] == 'true'}))" \
  "$code" "$message" "$checkpoints" "$whole" "$partial" "$resumed" "$ok" "$clear"
$ok
