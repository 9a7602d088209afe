"""What a training run's files are made of and how they reach the disk: Keras files serialised in memory,
atomic writes that check free space first (:class:`DiskSpaceError`), the weights a checkpoint holds (EMA
included). Which files a run directory holds, and when they are written, is :mod:`drn_tf.train.rundir`'s."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np


class DiskSpaceError(OSError):
    """No room for the run's files; the message names the file, the free space and what a checkpoint needs."""


# ------------------------------------------------------------------ small file helpers


def publish(src, dst, need: int | None = None) -> None:
    """Copy ``src`` to ``dst`` atomically (:func:`write_file`)."""
    write_file(dst, Path(src).read_bytes(), need)


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path) -> int:
    """Bytes free for an unprivileged user on the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def no_space_message(path, need: int | None) -> str:
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        free = _mb(free_bytes(folder))
    except OSError:
        free = "? MB"
    needs = f", a checkpoint needs ~{_mb(need)}" if need else ""
    return f"{path}: no space left on device while writing the checkpoint; {free} free{needs}"


def write_file(path, data: bytes | str, need: int | None = None) -> None:
    """:func:`drn_tf.core.utils.write_atomic` (the temporary file is removed if the write fails), with a full
    disk reported as :class:`DiskSpaceError` (``need``: bytes a checkpoint needs, for the message)."""
    from drn_tf.core.utils import write_atomic

    try:
        write_atomic(path, data)
    except OSError as exc:
        if exc.errno not in _NO_SPACE:
            raise
        raise DiskSpaceError(no_space_message(path, need)) from None


def check_free_space(run_dir, need: int) -> None:
    """Raise :class:`DiskSpaceError` unless ``need`` bytes are free where ``run_dir`` is."""
    free = free_bytes(run_dir)
    if free < need:
        raise DiskSpaceError(f"{run_dir}: no space left on device for the checkpoint; {_mb(free)} free, "
                             f"a checkpoint needs ~{_mb(need)}")


def current_lr(optimizer) -> float:
    return float(np.asarray(optimizer.learning_rate))


def weight_values(model, use_ema: bool = True) -> list[np.ndarray]:
    """``model.get_weights()``, with the optimizer's moving averages in place of the trainable
    weights when the optimizer keeps them."""
    values = [np.asarray(v.numpy()) for v in model.weights]
    opt = getattr(model, "optimizer", None)
    inner = getattr(opt, "inner_optimizer", opt)
    averages = getattr(inner, "_model_variables_moving_average", None) if use_ema else None
    if not (getattr(inner, "use_ema", False) and averages):
        return values
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    for j, v in enumerate(model.weights):
        i = index.get(id(v))
        if i is not None and averages[i] is not None:
            values[j] = np.asarray(averages[i].numpy())
    return values


def plain_clone(model, dtype_policy: str | None = "float32"):
    """A fresh copy of a DRN model's architecture (weights not copied) under ``dtype_policy``
    (None: the current global policy). Call it outside any ``strategy.scope()``, so the copy
    is a plain, undistributed model."""
    import keras

    saved = keras.config.dtype_policy()
    try:
        if dtype_policy is not None:
            keras.config.set_dtype_policy(dtype_policy)
        return model.__class__.from_config(model.get_config())
    finally:
        keras.config.set_dtype_policy(saved)


def model_bytes(model, values=None, clone=None) -> bytes:
    """``model`` (or its architecture with ``values``) as the bytes of a bare float32 ``.keras`` file.

    ``clone``: a :func:`plain_clone` of ``model`` to reuse (else one is made)."""
    clone = clone if clone is not None else plain_clone(model)
    clone.set_weights(weight_values(model) if values is None else values)
    return model_file_bytes(clone)


def save_model_file(model, path, values=None, clone=None, need: int | None = None) -> None:
    """Write ``model`` (or its architecture with ``values``) as a bare float32 ``.keras`` file, atomically."""
    write_file(path, model_bytes(model, values, clone), need)


def checkpoint_need(model, clone, validating: bool) -> int:
    """Bytes the files of one epoch end take beside the committed ones: the ``.weights.h5``
    checkpoint (with the optimizer state), ``last.keras`` and, when validating, a new
    ``best-N.keras`` and ``best.keras``, plus 1 MB for state, history and TensorBoard logs.
    Measured by serialising them in memory once."""
    keras_size = len(model_bytes(model, clone=clone))
    return len(weights_file_bytes(model)) + keras_size * (3 if validating else 1) + 1_000_000


def model_file_bytes(model) -> bytes:
    """``model.save(PATH.keras)`` as bytes, serialised in memory (HDF5 never writes to a disk)."""
    from keras.src.saving import saving_lib

    buf = io.BytesIO()
    saving_lib.save_model(model, buf)
    return buf.getvalue()


def weights_file_bytes(model) -> bytes:
    """``model.save_weights(PATH.weights.h5)`` (weights, and the optimizer state once it is built) as
    bytes, serialised in memory.

    HDF5 writing a file itself does not survive a full disk: the failed write's dataset is left
    half-closed in HDF5's id table, and HDF5's exit handler then crashes on it (a segmentation
    fault after the traceback). In memory the write cannot fail, and the bytes then go to disk
    through Python's file I/O, which reports ``ENOSPC`` and removes the partial file
    (:func:`drn_tf.core.utils.write_atomic`). The same steps as Keras 3.15's ``save_weights_only``.
    """
    from keras.src.saving import saving_lib

    buf = io.BytesIO()
    store = saving_lib.H5IOStore(buf, mode="w")
    try:
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    return buf.getvalue()


def atomic_save_weights(model, path: str | os.PathLike) -> None:
    """Save the model's weights only (no optimizer state) to ``path`` atomically.

    Keras 3 ``save_weights`` also writes the optimizer's slots once it is
    built (3x the size for Adam), so the weights go through a fresh copy of
    the model built from its config.
    """
    from drn_tf.core.utils import write_atomic

    clone = model.__class__.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    write_atomic(path, weights_file_bytes(clone))
