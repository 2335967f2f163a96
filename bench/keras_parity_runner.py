#!/usr/bin/env python3
"""Keras side of bench/keras_parity.py: train the shared peer's model for fixed epochs, one seed.

Runs inside the Keras virtual environment (Keras is not a dependency of cnnlab), so it imports
nothing from cnnlab: the model and the image loading are the peer's own (``build`` and
``load_imagefolder`` of ../shared/bench/keras_peer.py), imported, never copied. Reads
``ROOT/train/<class>/`` and ``ROOT/val/<class>/`` (the split bench/keras_parity.py made), and
prints one JSON line: held-out accuracy from ``model.evaluate`` and the seconds of each epoch
(``model.fit`` with the validation pass inside, as cnnlab's history.csv times its epochs).
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer", required=True, help="path of keras_peer.py")
    p.add_argument("--model", required=True)
    p.add_argument("--root", required=True, help="folder with train/ and val/ class folders")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    import tensorflow as tf

    # Thread pools are fixed before any op runs; afterwards TensorFlow refuses the change.
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(a.peer)))
    from keras_peer import build, load_imagefolder

    keras.utils.set_random_seed(a.seed)
    xt, yt, classes = load_imagefolder(os.path.join(a.root, "train"), None)
    xv, yv, val_classes = load_imagefolder(os.path.join(a.root, "val"), None)
    if classes != val_classes:
        raise SystemExit(f"train classes {classes} differ from val classes {val_classes}")
    if a.model == "step7":  # that report (and the peer) rescale outside the model
        xt, xv = xt / 255, xv / 255
    model = build(a.model, xt.shape[1:], len(classes))

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    seconds: list[float] = []
    started = time.perf_counter()
    model.fit(xt, yt, batch_size=a.batch, epochs=a.epochs, verbose=0, shuffle=True,
              validation_data=(xv, yv), callbacks=[EpochTimer()])
    train_s = time.perf_counter() - started
    loss, accuracy = model.evaluate(xv, yv, batch_size=256, verbose=0)
    print(json.dumps({
        "side": "keras", "peer": f"keras-{keras.__version__}-{keras.backend.backend()}",
        "tensorflow": tf.__version__, "model": a.model, "seed": a.seed,
        "train_images": len(xt), "val_images": len(xv), "epochs": a.epochs, "batch": a.batch,
        "val_accuracy": float(accuracy), "val_loss": float(loss),
        "epoch_seconds": [round(s, 3) for s in seconds], "train_seconds": round(train_s, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
