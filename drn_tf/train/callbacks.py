"""The Keras callbacks of ``drn train`` (module-level classes): step statistics, protocol validation, the
history, the checkpoints, the wall-clock deadline; and :func:`evaluate_pairs`, the validation's measure.

Backend-neutral (``keras.ops`` and numpy): the same code trains on TensorFlow and on JAX. Only the
validation callback's forward pass differs (a ``tf.function`` on TensorFlow, ``predict_on_batch``,
i.e. a jitted call, elsewhere); nothing here imports TensorFlow on another backend. Every file goes
through :mod:`drn_tf.train.rundir`.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from drn_tf.train import rundir, state


def evaluate_pairs(model: keras.Model, lrs, hrs, scale: int) -> tuple[float, float]:
    """Protocol Y-PSNR and Y-SSIM of ``model`` averaged over (LR, HR) uint8 pairs.

    Grey ``(H, W, 1)`` pairs (from :func:`drn_tf.core.protocol.read_benchmark`) are
    handled as ``drn evaluate`` does: the model sees the grey as RGB and its
    output is averaged back to one channel.
    """
    from drn_tf.core.protocol import evaluate_set
    from drn_tf.inference.evaluation import upscale_model

    return evaluate_set(lambda lr: upscale_model(model, lr), lrs, hrs, scale)


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
        step = int(np.asarray(self.model.optimizer.iterations.numpy()))  # waits for the last step
        dt = time.monotonic() - self.t_epoch
        self.train_seconds += dt
        self.steps_done += self.epoch_steps
        if logs is not None:
            logs["step"] = step
            logs["lr"] = state.current_lr(self.model.optimizer)
            logs["patches_per_s"] = self.epoch_steps * self.batch_size / max(dt, 1e-9)
            logs["wall_s"] = self.wall_offset + time.monotonic() - self.t_start


class Validation(keras.callbacks.Callback):
    """Protocol Y-PSNR/SSIM of whole validation images every ``every`` epochs (and after the last of
    ``plan``, a :class:`drn_tf.train.budget.RunPlan`, read at every epoch end: a re-plan moves it).

    Runs a plain (undistributed) copy of the model holding the current weights
    (the EMA weights when the optimizer keeps them). Logs ``val_<set>_psnr`` /
    ``val_<set>_ssim`` per set and ``val_psnr`` / ``val_ssim`` of the first set;
    NaN on epochs without validation so the CSV keeps fixed columns. Grey images
    are evaluated as ``drn evaluate`` does (replicated to RGB, the output averaged back).
    """

    def __init__(self, sets, scale, every, plan, clone):
        super().__init__()
        self.sets, self.scale, self.every, self.plan = sets, int(scale), int(every), plan
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

        self.clone.set_weights(state.weight_values(self.model))
        return {s.name: evaluate_set(self._predict, s.lrs, s.hrs, self.scale) for s in self.sets}

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not self.sets:
            return
        for k in self.keys():
            logs[k] = float("nan")
        if (epoch + 1) % self.every and epoch + 1 != self.plan.epochs and not self.model.stop_training:
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
    """One row of ``history.csv`` per epoch, with fixed columns (:func:`drn_tf.train.rundir.append_history`)."""

    def __init__(self, path, keys):
        super().__init__()
        self.path, self.keys = Path(path), list(keys)

    def on_epoch_end(self, epoch, logs=None):
        rundir.append_history(self.path, self.keys, epoch + 1, logs or {})


class Checkpoint(keras.callbacks.Callback):
    """The end of every epoch's files (:func:`drn_tf.train.rundir.commit_epoch`: ``last.keras``, an improved
    model, the resumable ``ckpt-<epoch>.weights.h5`` with the optimizer state, ``state.json`` naming them,
    each written atomically). A kill at any point leaves a consistent state; a full disk
    (:class:`drn_tf.train.state.DiskSpaceError`) leaves the committed state, no temporary file and no file of
    the failed epoch. Before
    training and before every epoch the disk must have ``need`` bytes free. ``extra``: more keys for
    ``state.json``; ``plan`` (a :class:`drn_tf.train.budget.RunPlan`) adds the planned step count once a
    wall-clock budget fitted it."""

    def __init__(self, run_dir, clone, keep=2, best=-float("inf"), best_epoch=None, wall_offset=0.0, extra=None,
                 best_file=None, need=0, t_start=None, plan=None):
        super().__init__()
        self.need = need  # bytes the files of one epoch end take (checked before every epoch)
        self.clone = clone  # a float32 plain_clone of the model, made outside any strategy scope
        self.run_dir = Path(run_dir)
        self.keep, self.best, self.best_epoch = keep, best, best_epoch
        self.best_file = best_file
        self.wall_offset = wall_offset
        self.extra = dict(extra or {})
        self.plan = plan
        self.seconds = 0.0
        self.t_start = t_start

    def on_train_begin(self, logs=None):
        if self.t_start is None:
            self.t_start = time.monotonic()
        (self.run_dir / rundir.CHECKPOINT).mkdir(parents=True, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        # before the epoch's work, not after it (also the check at the start: no step runs before this)
        state.check_free_space(self.run_dir, self.need)

    def on_epoch_end(self, epoch, logs=None):
        t = time.monotonic()
        psnr = (logs or {}).get("val_psnr")
        improved = psnr is not None and np.isfinite(psnr) and psnr > self.best
        if improved:
            self.best, self.best_epoch = float(psnr), epoch + 1
        committed = rundir.commit_epoch(
            self.run_dir, epoch=epoch + 1, step=int(np.asarray(self.model.optimizer.iterations.numpy())),
            model_file=state.model_bytes(self.model, clone=self.clone),
            weights_file=state.weights_file_bytes(self.model), improved=improved,
            best_psnr=None if self.best == -float("inf") else self.best, best_epoch=self.best_epoch,
            best_file=self.best_file, wall_s=self.wall_offset + time.monotonic() - self.t_start,
            backend=keras.backend.backend(), extra={**self.extra, **(self.plan.state_keys() if self.plan else {})},
            keep=self.keep, need=self.need)
        self.best_file = committed["best_file"]
        self.seconds += time.monotonic() - t


class Deadline(keras.callbacks.Callback):
    """Stops training at the end of an epoch when another one would end after the deadline of ``budget``
    (a :class:`drn_tf.train.budget.Budget`, which times the epochs): the safety net of a wall-clock budget
    whose fitted step count turned out too optimistic."""

    def __init__(self, budget):
        super().__init__()
        self.budget = budget

    def on_epoch_begin(self, epoch, logs=None):
        self.budget.epoch_begin()

    def on_epoch_end(self, epoch, logs=None):
        if self.budget.epoch_trained(epoch + 1):
            self.model.stop_training = True


class EpochWallClock(keras.callbacks.Callback):
    """The last callback of a budget run: tells the budget the epoch's callbacks are done."""

    def __init__(self, budget):
        super().__init__()
        self.budget = budget

    def on_epoch_end(self, epoch, logs=None):
        self.budget.epoch_done()
