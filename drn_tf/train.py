"""Training pieces shared by every training entry (losses, schedules, callbacks).

Backend-agnostic (``keras.ops`` and numpy only), so the same code trains on
TensorFlow (``drn train``) and on JAX (``training/train_gpu.py``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path

import numpy as np

import keras


def l1_loss():
    """The paper's loss: mean absolute error."""
    return keras.losses.MeanAbsoluteError(name="l1")


def cosine_lr(fraction: float, base_lr: float, warmup: float = 0.02, final_ratio: float = 0.01) -> float:
    """Linear warm-up for ``warmup`` of the run, then cosine decay to ``final_ratio * base_lr``."""
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < warmup:
        return base_lr * max(fraction / warmup, 0.01)
    t = (fraction - warmup) / max(1e-9, 1 - warmup)
    return base_lr * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def model_file_bytes(model: keras.Model) -> bytes:
    """``model.save(PATH.keras)`` as bytes, serialised in memory (HDF5 never writes to a disk)."""
    from keras.src.saving import saving_lib

    buf = io.BytesIO()
    saving_lib.save_model(model, buf)
    return buf.getvalue()


def weights_file_bytes(model: keras.Model) -> bytes:
    """``model.save_weights(PATH.weights.h5)`` (weights, and the optimizer state once it is built) as
    bytes, serialised in memory.

    HDF5 writing a file itself does not survive a full disk: the failed write's dataset is left
    half-closed in HDF5's id table, and HDF5's exit handler then crashes on it (a segmentation
    fault after the traceback). In memory the write cannot fail, and the bytes then go to disk
    through Python's file I/O, which reports ``ENOSPC`` and removes the partial file
    (:func:`drn_tf.utils.write_atomic`). The same steps as Keras 3.15's ``save_weights_only``.
    """
    from keras.src.saving import saving_lib

    buf = io.BytesIO()
    store = saving_lib.H5IOStore(buf, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    return buf.getvalue()


def atomic_save_weights(model: keras.Model, path: str | os.PathLike) -> None:
    """Save the model's weights only (no optimizer state) to ``path`` atomically.

    Keras 3 ``save_weights`` also writes the optimizer's slots once it is
    built (3x the size for Adam), so the weights go through a fresh copy of
    the model built from its config.
    """
    from drn_tf.utils import write_atomic

    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    write_atomic(path, weights_file_bytes(clone))


def atomic_save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """``model.save`` (``.keras``) atomically: serialised in memory, written under a temporary name
    (removed if the write fails), then renamed."""
    from drn_tf.utils import write_atomic

    write_atomic(path, model_file_bytes(model))


def predict_image(model: keras.Model, lr_uint8: np.ndarray) -> np.ndarray:
    """Run the model on one uint8 (H, W, 3) image; returns float32 (H*s, W*s, 3), unclipped."""
    x = lr_uint8[None].astype(np.float32) / 255.0
    return np.asarray(model.predict_on_batch(x))[0]


def evaluate_pairs(model: keras.Model, lrs, hrs, scale: int) -> tuple[float, float]:
    """Protocol Y-PSNR and Y-SSIM of ``model`` averaged over (LR, HR) uint8 pairs.

    Grey ``(H, W, 1)`` pairs (from :func:`drn_tf.data.validation_pairs`) are
    handled as ``drn evaluate`` does: the model sees the grey as RGB and its
    output is averaged back to one channel.
    """
    from drn_tf.evaluation import evaluate_pair, upscale_model

    results = [evaluate_pair(upscale_model(model, lr), hr, scale) for lr, hr in zip(lrs, hrs)]
    return float(np.mean([r[0] for r in results])), float(np.mean([r[1] for r in results]))


class TimeBudget(keras.callbacks.Callback):
    """Cosine learning rate over a wall-clock budget; stops training when it is spent.

    The learning rate is set at the start of each epoch (on JAX the optimizer
    state is only re-read from the variables at epoch boundaries).
    """

    def __init__(self, seconds: float, base_lr: float, warmup: float = 0.02, final_ratio: float = 0.01):
        super().__init__()
        self.seconds, self.base_lr, self.warmup, self.final_ratio = float(seconds), base_lr, warmup, final_ratio
        self.start = None

    def fraction(self) -> float:
        return 0.0 if self.start is None else (time.monotonic() - self.start) / self.seconds

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        lr = cosine_lr(self.fraction(), self.base_lr, self.warmup, self.final_ratio)
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(np.asarray(self.model.optimizer.learning_rate))
            logs["elapsed_s"] = time.monotonic() - self.start
        if self.fraction() >= 1.0:
            self.model.stop_training = True


class ProtocolValidation(keras.callbacks.Callback):
    """Every ``every_epochs`` epochs: protocol Y-PSNR/SSIM on whole benchmark images.

    Writes ``val_psnr``/``val_ssim`` into the epoch logs, appends a row to
    ``csv_path`` and keeps the best weights at ``best_path`` (atomic write).
    """

    def __init__(self, lrs, hrs, scale, every_epochs=1, csv_path=None, best_path=None, patches_per_epoch=None):
        super().__init__()
        self.lrs, self.hrs, self.scale = lrs, hrs, int(scale)
        self.every_epochs = max(1, int(every_epochs))
        self.csv_path = Path(csv_path) if csv_path else None
        self.best_path = Path(best_path) if best_path else None
        self.patches_per_epoch = patches_per_epoch
        self.best = -float("inf")
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        last = self.model.stop_training
        if (epoch + 1) % self.every_epochs and not last:
            return
        psnr, ssim = evaluate_pairs(self.model, self.lrs, self.hrs, self.scale)
        logs["val_psnr"], logs["val_ssim"] = psnr, ssim
        if self.best_path is not None and psnr > self.best:
            atomic_save_weights(self.model, self.best_path)
        self.best = max(self.best, psnr)
        row = {
            "epoch": epoch + 1,
            "wall_s": round(time.monotonic() - self.start, 1),
            "loss": float(logs.get("loss", float("nan"))),
            "lr": float(logs.get("lr", float("nan"))),
            "val_psnr": round(psnr, 4),
            "val_ssim": round(ssim, 5),
        }
        if self.patches_per_epoch:
            row["patches_seen"] = (epoch + 1) * self.patches_per_epoch
        print(f"\n[validation] epoch {epoch + 1}: " + json.dumps(row), flush=True)
        if self.csv_path is not None:
            new = not self.csv_path.exists()
            with open(self.csv_path, "a", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
