// FinchTrain: datasets and their formats, batching, AdamW and schedules, the trainer,
// checkpoints and resume, the run directory. Built on FinchModels (forward / backward)
// and FinchLoRA (adapters).
