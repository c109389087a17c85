# Sourced by the training checks that compare two runs' eval losses (qlora_loss_check.sh,
# quant_compute_check.sh): one recipe, so that their figures are comparable. Sets `common` to the
# `finch train` flags: DATA with a 5% eval split, LoRA r 16 all-linear, alpha 32, lr LR (2e-4), 10
# warm-up steps, batch 4, T ≤ 256, STEPS steps, eval every STEPS/4, no checkpoints, seed 42.
#   loss_recipe DATA STEPS [LR]
loss_recipe() {
  common=(--data "$1" --eval-fraction 0.05 --lora-r 16 --lora-alpha 32 --target-modules all-linear
          --learning-rate "${3:-2e-4}" --warmup-steps 10 --batch-size 4 --max-seq-len 256 --max-steps "$2"
          --eval-steps $(($2 / 4)) --save-steps 100000 --logging-steps 10 --seed 42)
}
