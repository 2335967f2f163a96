"""The pipeline's promises: metrics equal scikit-learn's, runs are marked, resumable, recorded."""

import json

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

from cnnlab.config import validate_config
from cnnlab.data import build_data
from cnnlab.errors import RunError
from cnnlab.models import build_model
from cnnlab.pipeline import resume_experiment, run_experiment
from cnnlab.store import read_history
from cnnlab.train import Classifier
from conftest import make_image_folder, tiny_experiment


def quiet(text):
    pass


def test_recorded_metrics_equal_sklearn_on_the_saved_models_predictions(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits", "test_split": 0.2},
                                          train={"epochs": 2}))
    outcome = run_experiment(cfg, say=quiet)
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())

    data = build_data(cfg.data)
    classifier = Classifier(build_model(cfg.model, data.in_shape, data.num_classes),
                            data.mean, data.std)
    classifier.load_state_dict(load_file(str(outcome.run_dir / "model.safetensors")))
    classifier.eval()
    with torch.no_grad():
        probs = classifier(data.test.images).softmax(dim=1).numpy()
    y_true, y_pred = data.test.labels.numpy(), probs.argmax(axis=1)
    labels = list(range(data.num_classes))

    test = metrics["test"]
    assert test["accuracy"] == pytest.approx(float((y_true == y_pred).mean()))
    assert test["log_loss"] == pytest.approx(log_loss(y_true, probs, labels=labels), rel=1e-4)
    assert test["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, name in enumerate(data.classes):
        row = test["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], r[i], f[i]))
        assert row["support"] == s[i]
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                    average="macro", zero_division=0)
    assert (test["macro"]["precision"], test["macro"]["recall"], test["macro"]["f1"]) == \
        pytest.approx((mp, mr, mf))
    csv_text = (outcome.run_dir / "confusion_matrix.csv").read_text().splitlines()
    assert csv_text[0] == "true," + ",".join(data.classes)


def test_nan_loss_marks_the_run_diverged(tmp_path):
    # An LR near float32's limit overflows within the first steps whatever the initial weights.
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 3, "lr": 1e38, "optimizer": "sgd"}))
    outcome = run_experiment(cfg, say=quiet)
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert "non-finite" in metrics["stop_reason"]


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path):
    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits"},
        train={"epochs": 30, "lr": 1e-9, "optimizer": "sgd",
               "early_stopping": {"monitor": "val_loss", "min_delta": 0.5, "patience": 1}}))
    outcome = run_experiment(cfg, say=quiet)
    metrics = outcome.metrics
    assert metrics["epochs_run"] == 2
    assert "early stopping" in metrics["stop_reason"]
    # At lr 1e-9 the two val_losses differ by rounding only: which is lower depends on the seed.
    val_losses = [row["val_loss"] for row in read_history(outcome.run_dir)]
    assert metrics["best_epoch"] == 1 + val_losses.index(min(val_losses))


def test_failed_run_is_marked_failed(tmp_path, monkeypatch):
    import cnnlab.pipeline as pipeline

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(pipeline, "train", boom)
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"}))
    with pytest.raises(RuntimeError):
        run_experiment(cfg, say=quiet)
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["status"] == "failed" and "simulated crash" in metrics["error"]


def test_interrupted_run_is_marked_and_resumes_to_completion(tmp_path, monkeypatch):
    import cnnlab.train.fit as fit

    original = fit.EpochRecorder.on_train_epoch_start

    def ctrl_c_in_second_epoch(self, trainer, pl_module):
        original(self, trainer, pl_module)
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(fit.EpochRecorder, "on_train_epoch_start", ctrl_c_in_second_epoch)
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"}, train={"epochs": 3}))
    outcome = run_experiment(cfg, say=quiet)
    assert outcome.metrics["status"] == "interrupted"
    assert json.loads((outcome.run_dir / "metrics.json").read_text())["status"] == "interrupted"
    assert "cnnlab resume" in outcome.metrics["resume"]

    # The first sitting's epoch "took" 1000 s: the resumed run's training time must include it.
    from cnnlab.store.run import read_history, write_csv

    history = read_history(outcome.run_dir)
    history[0]["seconds"] = 1000.0
    write_csv(outcome.run_dir / "history.csv", history, list(history[0]))

    monkeypatch.setattr(fit.EpochRecorder, "on_train_epoch_start", original)
    resumed = resume_experiment(outcome.run_dir, say=quiet)
    assert resumed.metrics["status"] == "completed" and resumed.metrics["epochs_run"] == 3
    assert 1000.0 < resumed.metrics["train_seconds"] < 1100.0
    epochs = [row.split(",")[0] for row in
              (outcome.run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2", "3"]
    with pytest.raises(RunError, match="already completed"):
        resume_experiment(outcome.run_dir, say=quiet)


# A checkpoint that stops improving (val_loss can only get worse than epoch 1's under mode max)
# and no monitor at all: last.ckpt must still be the last epoch's, not the best one's.
@pytest.mark.parametrize(("source", "checkpoint"), [
    ("digits", {"monitor": "val_accuracy"}), ("streamed", {"monitor": "val_accuracy"}),
    ("digits", {"monitor": "val_loss", "mode": "max"}), ("digits", None)])
def test_resumed_run_trains_what_the_uninterrupted_run_trains(tmp_path, monkeypatch, source,
                                                               checkpoint):
    """After a resume the next epoch starts, with the batches, augmentation and dropout draws
    the uninterrupted run had in that epoch, not epoch 1's again (nor the best epoch's next)."""
    import cnnlab.train.fit as fit

    data = {"name": "digits"}
    if source == "streamed":
        data = {"root": str(make_image_folder(tmp_path / "images", per_class=16)),
                "cache": "none", "workers": 0, "val_split": 0.25, "test_split": 0.0,
                "decode_cache": False}

    def experiment(name):
        return validate_config(tiny_experiment(
            tmp_path / name, data,
            augment=[{"flip": {"mode": "horizontal"}}, {"translation": {"factor": 0.1}}],
            model={"layers": [{"conv2d": {"filters": 4, "padding": "same", "activation": "relu"}},
                              {"maxpool2d": {"pool": 2}}, {"dropout": {"rate": 0.3}},
                              {"flatten": {}}]},
            train={"epochs": 4, "checkpoint": checkpoint}))

    whole = run_experiment(experiment("whole"), say=quiet)
    original = fit.EpochRecorder.on_train_epoch_start
    started = []

    def stop_in_third_epoch(self, trainer, pl_module):
        original(self, trainer, pl_module)
        started.append(trainer.current_epoch)
        if trainer.current_epoch == 2 and len(started) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(fit.EpochRecorder, "on_train_epoch_start", stop_in_third_epoch)
    interrupted = run_experiment(experiment("split"), say=quiet)
    assert interrupted.metrics["status"] == "interrupted"
    resumed = resume_experiment(interrupted.run_dir, say=quiet)
    assert started == [0, 1, 2, 2, 3]  # the unfinished third epoch again, then the fourth

    def losses(run_dir):
        rows = (run_dir / "history.csv").read_text().splitlines()[1:]
        return [float(row.split(",")[1]) for row in rows]

    assert resumed.metrics["status"] == "completed"
    assert losses(resumed.run_dir) == pytest.approx(losses(whole.run_dir), rel=1e-5)


def test_run_folder_records_resolved_config_and_versions(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"}))
    outcome = run_experiment(cfg, say=quiet)
    saved = yaml.safe_load((outcome.run_dir / "config.yaml").read_text())
    assert saved["train"]["optimizer"] == "adam"  # defaults are written out, not implied
    assert validate_config(saved) == cfg
    metrics = outcome.metrics
    assert metrics["versions"]["torch"].startswith("2.")
    assert np.isfinite(metrics["predict_images_per_s"]) and metrics["predict_images_per_s"] > 0


def test_without_checkpoint_the_last_epoch_is_evaluated_and_resumable(tmp_path):
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 2, "checkpoint": None}))
    outcome = run_experiment(cfg, say=quiet)
    assert outcome.metrics["weights"] == "last epoch" and outcome.metrics["best_epoch"] is None
    assert (outcome.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (outcome.run_dir / "checkpoints" / "best.ckpt").exists()


def test_validation_freq_validates_every_nth_epoch_only(tmp_path):
    # Keras's fit(validation_freq=2): epochs 2 and 4 validate; the others must not repeat the
    # last validation's figures (Lightning keeps them in callback_metrics).
    cfg = validate_config(tiny_experiment(tmp_path, {"name": "digits"},
                                          train={"epochs": 4, "validation_freq": 2,
                                                 "checkpoint": {"monitor": "val_accuracy"}}))
    outcome = run_experiment(cfg, say=quiet)
    history = read_history(outcome.run_dir)
    validated = [np.isfinite(row["val_accuracy"]) for row in history]
    assert validated == [False, True, False, True]
    assert all(np.isnan(row["val_loss"]) == (not v) for row, v in zip(history, validated))
    assert [row["val_seconds"] > 0 for row in history] == validated
    assert all(row["val_seconds"] < row["seconds"] for row in history)
    assert outcome.metrics["best_epoch"] in (2, 4)


SIZE_AGNOSTIC = {"layers": [{"conv2d": {"filters": 8, "padding": "same", "activation": "relu"}},
                            {"global_avg_pool": {}}]}


def test_progressive_resizing_and_ramped_lookahead_train_end_to_end(tmp_path, monkeypatch):
    from cnnlab.train import averaging, module

    sizes, synced = [], []
    original_prepare = module.LitClassifier.prepare_batch
    original_sync = averaging.RampedLookahead.sync

    def spy_prepare(self, batch, *, training, epoch=None):
        x, y = original_prepare(self, batch, training=training, epoch=epoch)
        if training:
            sizes.append((self.current_epoch, x.shape[-1]))
        return x, y

    def spy_sync(self, pl_module, alpha):
        synced.append(alpha)
        return original_sync(self, pl_module, alpha)

    monkeypatch.setattr(module.LitClassifier, "prepare_batch", spy_prepare)
    monkeypatch.setattr(averaging.RampedLookahead, "sync", spy_sync)
    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits"}, model=SIZE_AGNOSTIC,
        train={"epochs": 3, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
               "progressive_resize": [{"epochs": 1, "size": 4}, {"epochs": 1, "size": 6}],
               "lookahead": {"k": 2, "alpha": 0.3, "ramp": "cubic"}}))
    outcome = run_experiment(cfg, say=quiet)
    assert outcome.metrics["status"] == "completed"
    assert set(sizes) == {(0, 4), (1, 6), (2, 8)}  # digits are 8 x 8
    assert synced[0] > 0.99 and synced[-1] == 0.0  # no averaging at first, slow weights at the end
    assert min(synced[:-1]) < 0.5


def test_speed_techniques_train_resume_and_record(tmp_path, monkeypatch):
    """Alternating flip sees the epoch; Lookahead wraps the optimizer through a resume."""
    from cnnlab.train import module

    seen_epochs = []
    original = module.LitClassifier.prepare_batch

    def spy(self, batch, *, training):
        if training:
            seen_epochs.append(self.current_epoch)
        return original(self, batch, training=training)

    monkeypatch.setattr(module.LitClassifier, "prepare_batch", spy)
    cfg = validate_config(tiny_experiment(
        tmp_path, {"name": "digits"}, augment=[{"flip": {"alternate": True}}],
        train={"epochs": 2, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
               "lookahead": {"k": 3, "alpha": 0.5}}))
    outcome = run_experiment(cfg, say=quiet)
    assert outcome.metrics["status"] == "completed"
    assert set(seen_epochs) == {0, 1}
    assert outcome.metrics["val"]["accuracy"] > 0.3
