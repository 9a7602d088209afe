"""The run directory of ``drn train``: its files, and the one module that reads and writes them::

    config.yaml        the fully resolved config
    run.json           summary: backend, strategy, replicas, steps, wall time, patches/s, training TFLOP/s,
                       best PSNR, bicubic references
    history.csv        one row per epoch: step, loss, lr, validation PSNR/SSIM per set, throughput
    tensorboard/       TensorBoard logs (where TensorFlow is importable)
    checkpoint/        state.json + ckpt-<epoch>.weights.h5 (weights and optimizer state) + best-<epoch>.keras
    last.keras         the model after the latest epoch
    best.keras         the model with the best validation PSNR on the first validation set
    model.keras        the final model (EMA weights if optimizer.use_ema)

Crash safety: at the end of every epoch (:func:`commit_epoch`) the weights and optimizer state go to
``checkpoint/ckpt-<epoch>.weights.h5`` (and an improved model to ``checkpoint/best-<epoch>.keras``), each
written under a temporary name and renamed; then ``state.json`` is replaced atomically to point at them
(the commit point); then ``best.keras`` is copied from the committed best file and older files are
removed. A killed run started again loads the checkpoint named by ``state.json`` and continues at its
step, losing at most the epoch in progress; the history rows after that epoch are dropped
(:func:`trim_history`) and ``best.keras`` is restored from the committed best (:func:`restore_best`).
Temporary files of earlier killed runs (``.NAME.tmpPID``) are removed at the start
(:func:`remove_stale_temp_files`); a failed write removes its own, and a failed epoch end removes the
``best-<epoch>.keras`` and ``ckpt-<epoch>.weights.h5`` it wrote before ``state.json`` could name them.

Bytes reach the disk through :func:`drn_tf.train.state.write_file` (atomic; a full disk is a
:class:`drn_tf.train.state.DiskSpaceError`). No Keras import: ``drn plot`` reads histories with this module.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from drn_tf.train.state import publish, write_file

CONFIG, SUMMARY, HISTORY = "config.yaml", "run.json", "history.csv"
LAST, BEST, MODEL = "last.keras", "best.keras", "model.keras"
CHECKPOINT, STATE, TENSORBOARD = "checkpoint", "state.json", "tensorboard"


def checkpoint_name(epoch: int) -> str:
    return f"ckpt-{epoch:06d}.weights.h5"


def best_name(epoch: int) -> str:
    return f"best-{epoch:06d}.keras"


def checkpoint_files(run_dir) -> list[Path]:
    """The kept ``checkpoint/ckpt-<epoch>.weights.h5`` files, oldest first."""
    return sorted((Path(run_dir) / CHECKPOINT).glob("ckpt-*.weights.h5"))


# ------------------------------------------------------------------ temporary files

# Temporary names the run directory's own writers use (group 1: the writer's pid):
# .NAME.tmpPID (write_atomic), and older forms: .STEM.tmpPID.keras (model.save), .tmpPID-ckpt-N.weights.h5.
_RUN_FILES = r"(?:last\.keras|best\.keras|model\.keras|config\.yaml|run\.json|history\.csv)"
_CKPT_FILES = r"(?:state\.json|ckpt-\d+\.weights\.h5|best-\d+\.keras)"
_TEMP_PATTERNS = {
    "": [rf"\.{_RUN_FILES}\.tmp(\d+)", r"\.(?:last|best|model)\.tmp(\d+)\.keras", r"\.history\.tmp()"],
    CHECKPOINT: [rf"\.{_CKPT_FILES}\.tmp(\d+)", r"\.best-\d+\.tmp(\d+)\.keras", r"\.tmp(\d+)-ckpt-\d+\.weights\.h5"],
}


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this run has written nothing yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temp_files(run_dir) -> list[Path]:
    """Remove the temporary files that killed runs left in ``run_dir`` and ``run_dir/checkpoint``:
    only the names this module's writers use, and only those of processes no longer running.
    Returns the removed paths."""
    removed = []
    for sub, patterns in _TEMP_PATTERNS.items():
        folder = Path(run_dir) / sub
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            for pat in patterns:
                m = re.fullmatch(pat, f.name)
                if m and f.is_file() and not (m.group(1) and _pid_alive(int(m.group(1)))):
                    f.unlink(missing_ok=True)
                    removed.append(f)
                    break
    return removed


def discard(run_dir) -> None:
    """Forget the run in ``run_dir`` (``--fresh``): its checkpoint, history, summary, models and logs."""
    import shutil

    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)
    for name in (HISTORY, SUMMARY, LAST, BEST, MODEL):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / TENSORBOARD, ignore_errors=True)


def missing_folders(run_dir) -> list[Path]:
    """``run_dir`` and those of its parents that do not exist yet, innermost first."""
    out = []
    p = Path(run_dir).absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out


def remove_failed_start(run_dir, created) -> bool:
    """After a start that failed: remove ``run_dir`` when this start ``created`` it (:func:`missing_folders`,
    taken before making it) and it holds no checkpoint and no model, then the parents made with it that are
    empty now. A folder that existed before, or one with a checkpoint or a model, is kept. True when
    ``run_dir`` went."""
    import shutil

    run_dir = Path(run_dir).absolute()
    ckpt_dir = run_dir / CHECKPOINT
    trained = ((ckpt_dir.is_dir() and any(ckpt_dir.iterdir()))
               or any((run_dir / n).exists() for n in (LAST, BEST, MODEL)))
    if run_dir not in created or trained:
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in created[created.index(run_dir) + 1:]:
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
    return not run_dir.exists()


# ------------------------------------------------------------------ config.yaml


def write_config(run_dir, cfg: dict) -> None:
    from drn_tf.train.config import dump_config

    write_file(Path(run_dir) / CONFIG, dump_config(cfg))


def check_same_run(run_dir, cfg: dict) -> None:
    """Raise :class:`drn_tf.train.config.ConfigError` when the run in ``run_dir`` (its ``config.yaml``) differs
    from ``cfg`` in a key its checkpoint depends on (a key the saved run predates had its default there)."""
    from drn_tf.train.config import DEFAULTS, RESUME_KEYS, ConfigError

    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return
    import yaml

    saved = yaml.safe_load(path.read_text()) or {}
    diffs = [f"{s}.{k}: {saved.get(s, {}).get(k, DEFAULTS[s][k])!r} -> {cfg[s][k]!r}" for s, k in RESUME_KEYS
             if saved.get(s, {}).get(k, DEFAULTS[s][k]) != cfg[s][k]]
    if diffs:
        raise ConfigError(f"{run_dir} holds a checkpoint of a different run ({'; '.join(diffs)}); "
                          f"use another --out, or --fresh to start over there")


# ------------------------------------------------------------------ checkpoint/state.json, the commit point


def read_state(run_dir) -> dict | None:
    """The checkpoint state of a run directory, or None when it has no usable checkpoint."""
    p = Path(run_dir) / CHECKPOINT / STATE
    try:
        state = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not (Path(run_dir) / CHECKPOINT / state.get("weights", "")).is_file():
        return None
    return state


def write_state(run_dir, state: dict, need: int | None = None) -> None:
    write_file(Path(run_dir) / CHECKPOINT / STATE, json.dumps(state, indent=2), need)


def amend_state(run_dir, keys: dict, need: int | None = None) -> bool:
    """Add ``keys`` to the committed ``state.json``; False when there is none."""
    state = read_state(run_dir)
    if not state:
        return False
    write_state(run_dir, {**state, **keys}, need)
    return True


def commit_epoch(run_dir, *, epoch: int, step: int, model_file: bytes, weights_file: bytes, improved: bool,
                 best_psnr, best_epoch, best_file, wall_s: float, backend: str, extra: dict, keep: int,
                 need: int | None) -> dict:
    """The files of an epoch end, each written atomically, in the order that keeps the directory
    consistent whenever the run is killed: ``checkpoint/best-<epoch>.keras`` (``improved``), ``last.keras``,
    ``checkpoint/ckpt-<epoch>.weights.h5``, ``state.json`` naming them (the commit point), ``best.keras``,
    then the checkpoints beyond the ``keep`` latest and best files other than the committed one go.
    ``model_file``/``weights_file``: the bytes of the bare ``.keras`` model and of the weights with the
    optimizer state. Returns the state written."""
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT
    name = checkpoint_name(epoch)
    new_files = ([best_name(epoch)] if improved else []) + [name]  # named by no state.json until the commit point
    try:
        if improved:
            best_file = best_name(epoch)
            write_file(ckpt_dir / best_file, model_file, need)
        write_file(run_dir / LAST, model_file, need)
        write_file(ckpt_dir / name, weights_file, need)
        state = _epoch_state(epoch, step, name, best_psnr, best_epoch, best_file, wall_s, backend, extra)
        write_state(run_dir, state, need)
    except BaseException:  # a full disk, an interrupt: the epoch's files go, the committed state stays whole
        _remove_uncommitted(run_dir, new_files)
        raise
    if improved:
        write_file(run_dir / BEST, model_file, need)
    for old in checkpoint_files(run_dir)[:-keep]:
        if old.name != name:
            old.unlink(missing_ok=True)
    for old in ckpt_dir.glob("best-*.keras"):
        if old.name != best_file:
            old.unlink(missing_ok=True)
    return state


def _epoch_state(epoch, step, name, best_psnr, best_epoch, best_file, wall_s, backend, extra) -> dict:
    return {
        "epoch": epoch,
        "step": step,
        "weights": name,
        "best_val_psnr": best_psnr,
        "best_epoch": best_epoch,
        "best_file": best_file,
        "wall_s": round(wall_s, 2),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "backend": backend,
        **extra,
    }


def _remove_uncommitted(run_dir, names) -> None:
    """After a failed epoch end: remove the files of ``names`` in ``checkpoint/`` that the committed
    ``state.json`` does not name (a ``best-<epoch>.keras`` or ``ckpt-<epoch>.weights.h5`` written before the
    failure would otherwise lie beside a state that never points at it)."""
    ckpt_dir = Path(run_dir) / CHECKPOINT
    try:
        committed = json.loads((ckpt_dir / STATE).read_text())
    except (OSError, ValueError):
        committed = {}
    kept = {committed.get("weights"), committed.get("best_file")}
    for n in names:
        if n not in kept:
            (ckpt_dir / n).unlink(missing_ok=True)


def restore_best(run_dir, state: dict | None) -> str | None:
    """On resume: ``best.keras`` copied again from the committed best file; that file's name, or None."""
    best_file = state.get("best_file") if state else None
    ckpt_dir = Path(run_dir) / CHECKPOINT
    if best_file and (ckpt_dir / best_file).is_file():
        publish(ckpt_dir / best_file, Path(run_dir) / BEST)
        return best_file
    return None


# ------------------------------------------------------------------ history.csv


def history_keys(val_keys) -> list[str]:
    """The columns of ``history.csv`` after ``epoch``."""
    return ["step", "loss", "lr", *val_keys, "patches_per_s", "wall_s"]


def start_history(run_dir) -> None:
    """A run starting at step 0 starts a new history."""
    (Path(run_dir) / HISTORY).unlink(missing_ok=True)


def read_history(path) -> list[dict]:
    """Rows of a ``history.csv`` (numbers as float, ``epoch``/``step`` as int)."""
    rows = []
    try:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                out = {}
                for k, v in row.items():
                    try:
                        out[k] = int(v) if k in ("epoch", "step") else float(v)
                    except (TypeError, ValueError):
                        out[k] = v
                rows.append(out)
    except FileNotFoundError:
        pass
    return rows


def trim_history(run_dir, epoch: int, val_keys) -> None:
    """Keep the rows of the epochs up to ``epoch`` (the committed one), with the columns of this run."""
    path = Path(run_dir) / HISTORY
    rows = [r for r in read_history(path) if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch]
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, fieldnames=["epoch", *history_keys(val_keys)], extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    write_file(path, text.getvalue())


def append_history(path, keys, epoch: int, logs: dict) -> None:
    """One row (``epoch`` counts completed epochs, from 1; ``keys`` the other columns, from ``logs``),
    flushed to the disk; the header first in a new file."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    row = {"epoch": epoch}
    for k in keys:
        v = logs.get(k, float("nan"))
        try:
            v = float(np.asarray(v))
            row[k] = int(v) if k == "step" else (f"{v:.6g}" if k != "lr" else f"{v:.6e}")
        except (TypeError, ValueError):
            row[k] = v
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", *keys], extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


# ------------------------------------------------------------------ the end of a run


def write_model(run_dir, model_file: bytes, need: int | None = None) -> Path:
    """``model.keras``: the final model (bytes of a bare ``.keras`` file)."""
    path = Path(run_dir) / MODEL
    write_file(path, model_file, need)
    return path


def write_summary(run_dir, summary: dict, need: int | None = None) -> None:
    write_file(Path(run_dir) / SUMMARY, json.dumps(summary, indent=2, default=str), need)


def read_summary(run_dir) -> dict:
    path = Path(run_dir) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}
