"""Training: DSSTNE's optimizers, the Trainer, checkpoints, fingerprints."""
