"""Hand-made run records (config + metrics, no run folder) for the comparison tests."""

from pathlib import Path

from cnnlab.store.catalog import RunRecord


def record(name, seed, test_acc, *, lr=1e-3, seconds=10.0, status="completed", run_id=None,
           epochs=5):
    config = {"name": name, "runs_dir": "runs", "data": {"name": "digits", "normalization": "rescale"},
              "augment": [{"type": "flip", "mode": "horizontal"}],
              "model": {"name": "sequential", "layers": [{"type": "flatten"}]},
              "train": {"seed": seed, "lr": lr, "batch_size": 32, "epochs": epochs}}
    metrics = {"name": name, "status": status, "epochs_run": epochs, "train_seconds": seconds,
               "params": {"total": 100}, "test": {"accuracy": test_acc, "log_loss": 1 - test_acc},
               "val": {"accuracy": test_acc - 0.01, "log_loss": 1.0}}
    run_dir = Path("/runs") / name / (run_id or f"2026-{seed:04d}")
    return RunRecord(run_dir, config, metrics, {"in_shape": [1, 8, 8]})
