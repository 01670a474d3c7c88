"""Training: the engine (`engine.train`), its settings (`config.TrainConfig`), optimisers and schedules, losses,
the epoch's batches, the run folder's log, checkpoints, and the machine side (seeds, signals, torchrun)."""
