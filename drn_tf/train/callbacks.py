"""Training pieces of the engine behind ``drn train`` (:mod:`drn_tf.train.engine`): the loss, in-memory
serialisation of models and checkpoints, and the callbacks (module-level classes).

Backend-neutral (``keras.ops`` and numpy): the same code trains on TensorFlow and on JAX. Only the
validation callback's forward pass differs (a ``tf.function`` on TensorFlow, ``predict_on_batch``,
i.e. a jitted call, elsewhere); nothing here imports TensorFlow on another backend.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import keras
import numpy as np

from drn_tf.train.state import weights_file_bytes


def l1_loss():
    """The paper's loss: mean absolute error."""
    return keras.losses.MeanAbsoluteError(name="l1")


def evaluate_pairs(model: keras.Model, lrs, hrs, scale: int) -> tuple[float, float]:
    """Protocol Y-PSNR and Y-SSIM of ``model`` averaged over (LR, HR) uint8 pairs.

    Grey ``(H, W, 1)`` pairs (from :func:`drn_tf.core.protocol.read_benchmark`) are
    handled as ``drn evaluate`` does: the model sees the grey as RGB and its
    output is averaged back to one channel.
    """
    from drn_tf.core.protocol import evaluate_set
    from drn_tf.inference.evaluation import upscale_model

    return evaluate_set(lambda lr: upscale_model(model, lr), lrs, hrs, scale)



# ------------------------------------------------------------------ callbacks of the engine


class StepStats(keras.callbacks.Callback):
    """Adds ``step``, ``lr``, ``patches_per_s`` (training only) and ``wall_s`` (whole run) to the epoch logs."""

    def __init__(self, batch_size, epoch_steps, wall_offset=0.0, t_start=None):
        super().__init__()
        self.batch_size, self.epoch_steps, self.wall_offset = batch_size, epoch_steps, wall_offset
        self.t_start, self.t_epoch = t_start, None
        self.train_seconds = 0.0
        self.steps_done = 0

    def on_train_begin(self, logs=None):
        if self.t_start is None:  # kept over the two fit calls of a --minutes run
            self.t_start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.t_epoch = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        from drn_tf.train.state import current_lr

        step = int(np.asarray(self.model.optimizer.iterations.numpy()))  # waits for the last step
        dt = time.monotonic() - self.t_epoch
        self.train_seconds += dt
        self.steps_done += self.epoch_steps
        if logs is not None:
            logs["step"] = step
            logs["lr"] = current_lr(self.model.optimizer)
            logs["patches_per_s"] = self.epoch_steps * self.batch_size / max(dt, 1e-9)
            logs["wall_s"] = self.wall_offset + time.monotonic() - self.t_start


class Validation(keras.callbacks.Callback):
    """Protocol Y-PSNR/SSIM of whole validation images every ``every`` epochs (and after the last).

    Runs a plain (undistributed) copy of the model holding the current weights
    (the EMA weights when the optimizer keeps them). Logs ``val_<set>_psnr`` /
    ``val_<set>_ssim`` per set and ``val_psnr`` / ``val_ssim`` of the first set;
    NaN on epochs without validation so the CSV keeps fixed columns. Grey images
    are evaluated as ``drn evaluate`` does (replicated to RGB, the output averaged back).
    """

    def __init__(self, sets, scale, every, last_epoch, clone):
        super().__init__()
        self.sets, self.scale, self.every, self.last_epoch = sets, int(scale), int(every), int(last_epoch)
        self.clone = clone  # a plain_clone of the model, made outside any strategy scope
        self.fn = None
        self.seconds = 0.0
        self._warm = False

    def keys(self):
        keys = ["val_psnr", "val_ssim"] if self.sets else []
        for s in self.sets:
            keys += [f"val_{s.name}_psnr", f"val_{s.name}_ssim"]
        return keys

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if keras.backend.backend() != "tensorflow":
            return np.asarray(self.clone.predict_on_batch(x))  # jitted, one trace per image shape
        if self.fn is None:
            import tensorflow as tf

            clone = self.clone
            self.fn = tf.function(lambda t: clone(t, training=False), reduce_retracing=True,
                                  input_signature=[tf.TensorSpec((1, None, None, 3), tf.float32)])
        return self.fn(x).numpy()

    def on_train_begin(self, logs=None):
        """Compile the forward pass for every validation image shape now (JAX traces one per shape), so the
        first validation's time is its running time: the wall-clock budget (``--minutes``) measures it."""
        if self._warm:
            return
        self._warm = True
        shapes = sorted({lr.shape[:2] for s in self.sets for lr in s.lrs})
        for h, w in shapes if keras.backend.backend() != "tensorflow" else shapes[:1]:
            self._forward(np.zeros((1, h, w, 3), np.float32))

    def _predict(self, lr):
        from drn_tf.core.protocol import model_input, model_output

        return model_output(self._forward(model_input(lr)[None])[0], lr.shape[-1] == 1)

    def evaluate(self):
        from drn_tf.core.protocol import evaluate_set
        from drn_tf.train.state import weight_values

        self.clone.set_weights(weight_values(self.model))
        return {s.name: evaluate_set(self._predict, s.lrs, s.hrs, self.scale) for s in self.sets}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.sets:
            return
        for k in self.keys():
            logs[k] = float("nan")
        if (epoch + 1) % self.every and epoch + 1 != self.last_epoch and not self.model.stop_training:
            return
        t = time.monotonic()
        res = self.evaluate()
        self.seconds += time.monotonic() - t
        for i, s in enumerate(self.sets):
            p, q = res[s.name]
            logs[f"val_{s.name}_psnr"], logs[f"val_{s.name}_ssim"] = p, q
            if i == 0:
                logs["val_psnr"], logs["val_ssim"] = p, q
        text = ", ".join(f"{n} {p:.2f} dB / {q:.4f} (bicubic {s.bicubic_psnr:.2f})"
                         for s, (n, (p, q)) in zip(self.sets, res.items()))
        print(f"\n[validation] epoch {epoch + 1}: {text}", flush=True)


class HistoryCSV(keras.callbacks.Callback):
    """One row per epoch with fixed columns (``epoch`` counts completed epochs, from 1)."""

    def __init__(self, path, keys):
        super().__init__()
        self.path, self.keys = Path(path), ["epoch"] + list(keys)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        new = not self.path.exists() or self.path.stat().st_size == 0
        row = {"epoch": epoch + 1}
        for k in self.keys[1:]:
            v = logs.get(k, float("nan"))
            try:
                v = float(np.asarray(v))
                row[k] = int(v) if k == "step" else (f"{v:.6g}" if k != "lr" else f"{v:.6e}")
            except (TypeError, ValueError):
                row[k] = v
        with open(self.path, "a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.keys, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())


class Checkpoint(keras.callbacks.Callback):
    """End of every epoch, each file written atomically (temporary name, then rename):
    ``last.keras``; ``checkpoint/best-<epoch>.keras`` if validation improved; the resumable
    ``checkpoint/ckpt-<epoch>.weights.h5`` (weights + optimizer state, the same file on every
    backend); then ``state.json`` naming both (the commit point); then ``best.keras`` is published
    from the committed best file and older files are removed. A kill at any point leaves a
    consistent state; a full disk (:class:`drn_tf.train.engine.DiskSpaceError`) leaves the committed
    state and no temporary file. Before training and before every epoch the disk must have
    ``need`` bytes free. ``extra``: more keys for ``state.json`` (a dict, read at every write)."""

    def __init__(self, run_dir, clone, keep=2, best=-float("inf"), best_epoch=None, wall_offset=0.0, extra=None,
                 best_file=None, need=0, t_start=None):
        super().__init__()
        self.need = need  # bytes the files of one epoch end take (checked before every epoch)
        self.clone = clone  # a float32 plain_clone of the model, made outside any strategy scope
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "checkpoint"
        self.keep, self.best, self.best_epoch = keep, best, best_epoch
        self.best_file = best_file
        self.wall_offset = wall_offset
        self.extra = extra if extra is not None else {}
        self.seconds = 0.0
        self.t_start = t_start

    def on_train_begin(self, logs=None):
        if self.t_start is None:
            self.t_start = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        from drn_tf.train.state import check_free_space

        # before the epoch's work, not after it (also the check at the start: no step runs before this)
        check_free_space(self.run_dir, self.need)

    def on_epoch_end(self, epoch, logs=None):
        from drn_tf.train.state import model_bytes, write_file

        t = time.monotonic()
        logs = logs or {}
        psnr = logs.get("val_psnr")
        improved = psnr is not None and np.isfinite(psnr) and psnr > self.best
        model_file = model_bytes(self.model, clone=self.clone)
        if improved:
            self.best, self.best_epoch = float(psnr), epoch + 1
            self.best_file = f"best-{epoch + 1:06d}.keras"
            write_file(self.dir / self.best_file, model_file, self.need)
        write_file(self.run_dir / "last.keras", model_file, self.need)
        name = f"ckpt-{epoch + 1:06d}.weights.h5"
        write_file(self.dir / name, weights_file_bytes(self.model), self.need)
        state = {
            "epoch": epoch + 1,
            "step": int(np.asarray(self.model.optimizer.iterations.numpy())),
            "weights": name,
            "best_val_psnr": None if self.best == -float("inf") else self.best,
            "best_epoch": self.best_epoch,
            "best_file": self.best_file,
            "wall_s": round(self.wall_offset + time.monotonic() - self.t_start, 2),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "backend": keras.backend.backend(),
            **self.extra,
        }
        write_file(self.dir / "state.json", json.dumps(state, indent=2), self.need)
        if improved:
            write_file(self.run_dir / "best.keras", model_file, self.need)
        ckpts = sorted(self.dir.glob("ckpt-*.weights.h5"))
        for old in ckpts[: -self.keep]:
            if old.name != name:
                old.unlink(missing_ok=True)
        for old in self.dir.glob("best-*.keras"):
            if old.name != self.best_file:
                old.unlink(missing_ok=True)
        self.seconds += time.monotonic() - t


class Deadline(keras.callbacks.Callback):
    """Stops training at the end of an epoch when another one would end after ``deadline``
    (``time.monotonic()``; an epoch taking as long as the last one, validation and checkpoint included):
    the safety net of a wall-clock budget whose fitted step count turned out too optimistic.
    ``epoch_walls`` keeps each epoch's wall-clock time, from its start to the end of its callbacks."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = float(deadline)
        self.stopped_epoch = None
        self.epoch_walls: list[float] = []
        self._t = self._trained = None
        self._overhead = 0.0  # the last epoch's time after its training: validation, checkpoint, logs

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self._trained = now - self._t
        if now + self._trained + self._overhead >= self.deadline:
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1

    def epoch_finished(self):
        """Called after the epoch's other callbacks (by :class:`EpochWallClock`, the engine's last one)."""
        wall = time.monotonic() - self._t
        self.epoch_walls.append(wall)
        self._overhead = max(0.0, wall - self._trained)


class EpochWallClock(keras.callbacks.Callback):
    """The last callback of the engine: tells :class:`Deadline` the epoch's callbacks are done."""

    def __init__(self, deadline: Deadline):
        super().__init__()
        self.deadline = deadline

    def on_epoch_end(self, epoch, logs=None):
        self.deadline.epoch_finished()
