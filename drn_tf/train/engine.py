"""The training engine behind ``drn train``, on the TensorFlow and the JAX backends (``KERAS_BACKEND``).

One YAML config (``training/configs/*.yaml``; every key and its default is in
:data:`DEFAULTS`, overridable with ``--set section.key=value``) describes a
run; :func:`train` runs it and writes to the run directory::

    config.yaml        the fully resolved config
    run.json           summary: backend, strategy, replicas, steps, wall time, patches/s, training TFLOP/s,
                       best PSNR, bicubic references
    history.csv        one row per epoch: step, loss, lr, validation PSNR/SSIM per set, throughput
    tensorboard/       TensorBoard logs (where TensorFlow is importable)
    checkpoint/        state.json + ckpt-<epoch>.weights.h5 (weights and optimizer state) + best-<epoch>.keras
    last.keras         the model after the latest epoch
    best.keras         the model with the best validation PSNR on the first validation set
    model.keras        the final model (EMA weights if optimizer.use_ema)

The ``.keras`` files hold the bare model (no optimizer) and load with
:func:`drn_tf.models.drn.load_model` (``safe_mode=True``). Every file is the same on
both backends: a checkpoint written under one resumes under the other with the
same weights, optimizer state and step counter.

One engine: the schedule, loss, optimizer (and its EMA), callbacks
(:mod:`drn_tf.train.callbacks`: step stats, protocol validation, CSV history,
checkpoints, the wall-clock deadline), resume and the summary are shared; only
the distribution and the input pipeline depend on the backend.

TensorFlow: several GPUs -> ``MirroredStrategy``; a ``TF_CONFIG`` naming
several workers -> ``MultiWorkerMirroredStrategy``; else the default
strategy. The model and optimizer are built in ``strategy.scope()``, the
global batch is split across replicas (:func:`drn_tf.data.tfdata.make_train_dataset`
with the input context: each input pipeline makes only its own patches).
One device and ``MirroredStrategy`` train with ``model.fit``. Under
``MultiWorkerMirroredStrategy`` Keras 3's ``fit`` fails before the first step
(keras-team/keras#20585: its symbolic build reduces the whole
``PerReplica`` input structure with ``strategy.reduce``, and its metric
reduction uses ``axis=0`` on scalars), so there :func:`custom_fit` runs the
same loop itself: ``strategy.run(model.train_step)`` in a ``tf.function``,
metrics reduced with ``axis=None``, and the same callbacks (progress bar,
validation, CSV, TensorBoard, checkpoints) through a ``CallbackList``.

JAX: ``model.fit`` (jitted) over :meth:`drn_tf.data.patches.PatchSampler.stream`, a
generator of the same batches as the ``tf.data`` stream from the same global
step (``data.pipeline: numpy``; threads cut patches ahead with ``data.workers``); several
local devices -> ``keras.distribution.DataParallel``. Nothing on this path
imports TensorFlow (TensorBoard logs are written only where it is importable).

Wall-clock budget (``train.minutes`` / ``--minutes``): the run trains
:data:`CALIBRATION_EPOCHS` epochs (inside the warm-up), fits ``train.steps``
to what is left of the budget from their wall-clock times
(:func:`fit_to_budget`), refits the cosine schedule (warm-up at most 10 % of
it) and continues with the train function traced again; a
:class:`drn_tf.train.callbacks.Deadline` stops it at an epoch end if it falls behind.
The fitted count goes to ``config.yaml`` and ``state.json``; a resumed run keeps it.

Crash safety: at the end of every epoch (``train.epoch_steps`` steps) the
weights and optimizer state go to ``checkpoint/ckpt-<epoch>.weights.h5`` (and
an improved model to ``checkpoint/best-<epoch>.keras``), each written under a
temporary name and renamed; then ``state.json`` is replaced atomically to
point at them (the commit point); then ``best.keras`` is copied from the
committed best file and older files are removed. A killed run started again
with the same command loads the checkpoint named by ``state.json`` and
continues at its step with the same data stream (batches are a pure function
of the seed and the global step), losing at most the epoch in progress; the
history rows after that epoch are dropped and ``best.keras`` is restored from
the committed best. Temporary files of earlier killed runs (``.NAME.tmpPID``)
are removed at the start; a failed write removes its own.

Disk space: the files are serialised in memory and written with Python's file
I/O, so a full disk is an error (:class:`DiskSpaceError`: how much is free,
how much a checkpoint needs), never a crash, and the committed checkpoint
stays as it was. Free space is checked before training starts and before
every epoch, so a run on a full disk stops before it spends an epoch's work.

Nothing here imports Keras or a framework at module level (so ``drn train --help``
and config handling stay fast); :func:`train` imports them.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drn_tf.train.state import (
    checkpoint_need,
    plain_clone,
    publish,
    save_model_file,
    weight_values,
    write_file,
)

# ------------------------------------------------------------------ config

# section -> key -> (default, help). The order is the order of config.yaml.
SCHEMA: dict[str, dict[str, tuple]] = {
    "model": {
        "preset": ("drn_x2", "preset name (drn_x2 ... drn_s_x4) or family (drn, drn_s) with model.scale"),
        "scale": (None, "upscaling factor; must match the preset (null: the preset's)"),
        "overrides": ({}, "constructor arguments replacing the preset's, e.g. {channels: 16}"),
        "init_from": (None, "start from this .keras / .weights.h5 / run dir / preset: layers matching by "
                            "name and shape are copied, the upsampler is skipped"),
    },
    "data": {
        "root": (None, "folder relative data paths are resolved against (null: --data, $DRN_DATA or ../shared/data)"),
        "train": (["train/T91", "train/BSD200"], "HR training image folders"),
        "val": (["benchmark/Set5"], "validation sets: whole images, protocol Y-PSNR/SSIM ([] for none)"),
        "val_degrade": (None, "degradation of the validation LR (bicubic reference included), as drn evaluate "
                              "--degrade takes it, e.g. jpeg:75 (null: the clean LR of the protocol)"),
        "cache_dir": (None, "LR cache folder (null: $DRN_CACHE_DIR or ~/.cache/drn_tf)"),
        "patch_size": (48, "LR patch size (HR patch = patch_size * scale)"),
        "augment": (True, "random flips/rotations"),
        "degrade": ({"prob": 0.0, "pool": 3, "jpeg_quality": [55, 95], "noise_prob": 0.0, "noise_sigma": [1.0, 8.0]},
                    "LR degradation for photo models: prob = share of patches cut from one of `pool` degraded "
                    "copies of each training LR, each a JPEG at a quality drawn from jpeg_quality, after Gaussian "
                    "noise (sigma drawn from noise_sigma, 0-255 levels) with probability noise_prob; "
                    "prob 0: clean LR only"),
        "pipeline": ("auto", "auto (tf.data on TensorFlow, numpy elsewhere) | tf.data | numpy (a generator of "
                             "the same batches; the only one without TensorFlow) | device (JAX: the training set "
                             "on the accelerator as uint8, patches cut there by a jitted function)"),
        "workers": (0, "numpy pipeline: threads cutting patches ahead of the step (0: between steps)"),
    },
    "train": {
        "batch_size": (16, "global batch size, split across replicas"),
        "steps": (100000, "total optimizer steps (rounded up to whole epochs)"),
        "minutes": (None, "wall-clock budget in minutes from the start of the run (data loading included): the first 3 epochs "
                          "measure the speed, then "
                          "train.steps is fitted to the budget (schedule over it) and the run stops in time with "
                          "everything saved; a resumed run keeps the fitted steps (null: train.steps)"),
        "epoch_steps": (1000, "steps per epoch: the checkpoint/validation/log interval"),
        "val_every": (1, "validate every N epochs (and after the last)"),
        "seed": (0, "seed of the weights and of the patch stream"),
        "mixed_precision": (False, "false | true (the fast one here: mixed_float16 on GPU, mixed_bfloat16 on "
                            "a CPU with AVX512-BF16/AMX, else float32) | mixed_float16 | mixed_bfloat16"),
        "jit_compile": ("auto", "XLA for the train step: auto (on GPU only) | true | false"),
        "steps_per_execution": (1, "train steps per compiled call (tf.function / jax.jit; model.fit only)"),
        "loop": ("auto", "auto (model.fit; own strategy.run loop under multi-worker) | fit | custom"),
        "deterministic": (False, "TensorFlow: tf.config.experimental.enable_op_determinism (bitwise reproducible, "
                                 "slower)"),
        "tensorboard": ("auto", "TensorBoard logs: auto (when TensorFlow is importable) | true | false"),
        "keep_checkpoints": (2, "checkpoints kept in checkpoint/"),
    },
    "optimizer": {
        "name": ("adam", "adam | adamw | sgd"),
        "learning_rate": (5e-4, "peak learning rate"),
        "beta_1": (0.9, "Adam beta_1"),
        "beta_2": (0.999, "Adam beta_2"),
        "epsilon": (1e-8, "Adam epsilon"),
        "momentum": (0.9, "SGD momentum"),
        "weight_decay": (None, "decoupled weight decay (adamw default 1e-4)"),
        "clipnorm": (None, "clip each gradient to this norm"),
        "use_ema": (False, "keep an exponential moving average of the weights; saved models use it"),
        "ema_momentum": (0.999, "EMA momentum"),
    },
    "schedule": {
        "name": ("cosine", "cosine (linear warm-up, cosine decay) | step (x gamma every decay_every steps) | constant"),
        "warmup_steps": (1000, "cosine: linear warm-up steps"),
        "final_ratio": (0.01, "cosine: final learning rate / peak"),
        "decay_every": (50000, "step: steps between decays"),
        "gamma": (0.5, "step: decay factor"),
    },
}

DEFAULTS = {sec: {k: copy.deepcopy(v[0]) for k, v in keys.items()} for sec, keys in SCHEMA.items()}

# Keys whose change makes an existing checkpoint unusable.
_RESUME_KEYS = [("model", "preset"), ("model", "scale"), ("model", "overrides"), ("data", "patch_size"),
                ("data", "degrade"), ("train", "batch_size"), ("train", "epoch_steps"), ("train", "seed"), ("optimizer", "name"),
                ("optimizer", "use_ema")]


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and why."""


def config_help() -> str:
    """The config keys, defaults and meanings, for ``drn train --help``."""
    lines = []
    for sec, keys in SCHEMA.items():
        lines.append(f"  {sec}:")
        for k, (default, text) in keys.items():
            lines.append(f"    {k} = {json.dumps(default)}: {text}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[str, str, object]:
    """``"section.key=value"`` -> (section, key, value); the value is parsed as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.batch_size=8")
    path, raw = text.split("=", 1)
    parts = path.strip().split(".")
    if len(parts) != 2:
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. train.batch_size")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc})") from None
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    return parts[0], parts[1], value


def merge(base: dict, update: dict, where: str = "config") -> dict:
    """``base`` with ``update`` laid over it; unknown sections/keys raise :class:`ConfigError`."""
    out = copy.deepcopy(base)
    if not isinstance(update, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(update).__name__}")
    for sec, keys in update.items():
        if sec not in SCHEMA:
            raise ConfigError(f"{where}: unknown section {sec!r}; sections: {', '.join(SCHEMA)}")
        if keys is None:
            continue
        if not isinstance(keys, dict):
            raise ConfigError(f"{where}: section {sec!r} must be a mapping")
        for k, v in keys.items():
            if k not in SCHEMA[sec]:
                raise ConfigError(f"{where}: unknown key {sec}.{k}; keys of {sec}: {', '.join(SCHEMA[sec])}")
            out[sec][k] = copy.deepcopy(v)
    return out


def load_config(path=None, overrides=(), sets=()) -> dict:
    """Defaults <- the YAML file ``path`` <- ``overrides`` (a nested dict) <- ``sets`` ("sec.key=value")."""
    import yaml

    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        cfg = merge(cfg, data, str(path))
    if overrides:
        cfg = merge(cfg, overrides, "options")
    for text in sets:
        sec, k, v = parse_override(text)
        cfg = merge(cfg, {sec: {k: v}}, f"--set {text}")
    return cfg


def _as_int(cfg, sec, key, minimum=None):
    from drn_tf.core.utils import check_int

    cfg[sec][key] = check_int(f"{sec}.{key}", cfg[sec][key], minimum, error=ConfigError)
    return cfg[sec][key]


def _as_float(cfg, sec, key, minimum=None, allow_none=False):
    v = cfg[sec][key]
    if v is None and allow_none:
        return None
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            pass
    from drn_tf.core.utils import check_float

    cfg[sec][key] = check_float(f"{sec}.{key}", v, minimum, error=ConfigError)
    return cfg[sec][key]


def _as_list(cfg, sec, key):
    v = cfg[sec][key]
    if v is None:
        v = []
    if isinstance(v, (str, os.PathLike)):
        v = [v]
    if not isinstance(v, list):
        raise ConfigError(f"{sec}.{key} must be a list of folders, got {v!r}")
    cfg[sec][key] = [str(x) for x in v]
    return cfg[sec][key]


def default_data_root() -> Path:
    """The data folder of the config's ``data.root: null`` (:func:`drn_tf.core.utils.default_data_root`)."""
    from drn_tf.core.utils import default_data_root as root

    return root()


def resolve_config(cfg: dict) -> dict:
    """Check types and values and fill derived values; returns a new dict. Raises :class:`ConfigError`."""
    from drn_tf.models.presets import PRESETS, SCALES

    cfg = merge(DEFAULTS, cfg)
    m = cfg["model"]
    preset, scale = m["preset"], m["scale"]
    if scale is not None:
        scale = _as_int(cfg, "model", "scale", 1)
    if preset in PRESETS:
        pscale = PRESETS[preset]["config"]["scale"]
        if scale is not None and scale != pscale:
            raise ConfigError(f"model.scale {scale} does not match preset {preset} (x{pscale}); "
                              f"use preset {preset.rsplit('_x', 1)[0]}_x{scale}")
        m["scale"] = pscale
    elif f"{preset}_x{scale}" in PRESETS:
        m["preset"] = f"{preset}_x{scale}"
    else:
        families = sorted({n.rsplit("_x", 1)[0] for n in PRESETS})
        raise ConfigError(f"model.preset {preset!r} (scale {scale}) is not a preset; presets: "
                          f"{', '.join(sorted(PRESETS))} (or a family {', '.join(families)} with model.scale in {SCALES})")
    if m["overrides"] is None:
        m["overrides"] = {}
    if not isinstance(m["overrides"], dict):
        raise ConfigError("model.overrides must be a mapping of DRN constructor arguments")
    if "scale" in m["overrides"]:
        raise ConfigError("model.overrides may not change the scale; pick the preset of that scale")
    if m["init_from"] in ("", "none", "null"):
        m["init_from"] = None

    d = cfg["data"]
    _as_list(cfg, "data", "train")
    _as_list(cfg, "data", "val")
    if not d["train"]:
        raise ConfigError("data.train names no folder")
    _as_int(cfg, "data", "patch_size", 4)
    d["augment"] = bool(d["augment"])
    from drn_tf.core.degrade import TrainDegradation, parse_degradations

    try:
        d["degrade"] = TrainDegradation.from_config(d["degrade"]).to_config()
        val_ops = [] if d["val_degrade"] in (None, "", "none", "clean") else parse_degradations(d["val_degrade"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if len(val_ops) > 1:
        raise ConfigError(f"data.val_degrade takes one degradation (e.g. jpeg:75), got {d['val_degrade']!r}")
    d["val_degrade"] = val_ops[0].label if val_ops else None

    t = cfg["train"]
    for key, lo in (("batch_size", 1), ("steps", 1), ("epoch_steps", 1), ("val_every", 1), ("seed", 0),
                    ("steps_per_execution", 1), ("keep_checkpoints", 1)):
        _as_int(cfg, "train", key, lo)
    epochs = math.ceil(t["steps"] / t["epoch_steps"])
    t["steps"] = epochs * t["epoch_steps"]
    mp = t["mixed_precision"]
    if mp in (None, "none", "false", "float32"):
        mp = False
    if mp not in (False, True, "mixed_float16", "mixed_bfloat16"):
        raise ConfigError(f"train.mixed_precision must be false, true, mixed_float16 or mixed_bfloat16; got {mp!r}")
    t["mixed_precision"] = mp
    if t["jit_compile"] not in ("auto", True, False):
        raise ConfigError(f"train.jit_compile must be auto, true or false; got {t['jit_compile']!r}")
    if t["loop"] not in ("auto", "fit", "custom"):
        raise ConfigError(f"train.loop must be auto, fit or custom; got {t['loop']!r}")
    t["deterministic"] = bool(t["deterministic"])
    if t["tensorboard"] not in ("auto", True, False):
        raise ConfigError(f"train.tensorboard must be auto, true or false; got {t['tensorboard']!r}")
    if t["minutes"] is not None:
        _as_float(cfg, "train", "minutes", 0.0)
        if t["minutes"] <= 0:
            raise ConfigError(f"train.minutes must be > 0; got {t['minutes']!r}")
    if d["pipeline"] not in ("auto", "tf.data", "numpy", "device"):
        raise ConfigError(f"data.pipeline must be auto, tf.data, numpy or device; got {d['pipeline']!r}")
    _as_int(cfg, "data", "workers", 0)

    o = cfg["optimizer"]
    o["name"] = str(o["name"]).lower()
    if o["name"] not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"optimizer.name must be adam, adamw or sgd; got {o['name']!r}")
    _as_float(cfg, "optimizer", "learning_rate", 0.0)
    for key in ("beta_1", "beta_2", "epsilon", "momentum", "ema_momentum"):
        _as_float(cfg, "optimizer", key, 0.0)
    _as_float(cfg, "optimizer", "weight_decay", 0.0, allow_none=True)
    _as_float(cfg, "optimizer", "clipnorm", 0.0, allow_none=True)
    o["use_ema"] = bool(o["use_ema"])

    s = cfg["schedule"]
    s["name"] = str(s["name"]).lower()
    if s["name"] not in ("cosine", "step", "constant"):
        raise ConfigError(f"schedule.name must be cosine, step or constant; got {s['name']!r}")
    _as_int(cfg, "schedule", "warmup_steps", 0)
    _as_int(cfg, "schedule", "decay_every", 1)
    _as_float(cfg, "schedule", "final_ratio", 0.0)
    _as_float(cfg, "schedule", "gamma", 0.0)
    return cfg


def data_paths(cfg: dict, root=None) -> tuple[list[Path], list[Path], Path]:
    """Training and validation folders of a resolved config: relative ones under the data root, or, when
    they are not there but exist relative to the working directory (``--val ../my/set``), that folder."""
    root = Path(root or cfg["data"]["root"] or default_data_root())

    def res(p):
        p = Path(p).expanduser()
        if p.is_absolute():
            return p
        return root / p if (root / p).exists() or not p.is_dir() else p.resolve()

    return [res(p) for p in cfg["data"]["train"]], [res(p) for p in cfg["data"]["val"]], root


def dump_config(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


# Temporary names the run directory's own writers use (group 1: the writer's pid):
# .NAME.tmpPID (write_atomic), and older forms: .STEM.tmpPID.keras (model.save), .tmpPID-ckpt-N.weights.h5.
_RUN_FILES = r"(?:last\.keras|best\.keras|model\.keras|config\.yaml|run\.json|history\.csv)"
_CKPT_FILES = r"(?:state\.json|ckpt-\d+\.weights\.h5|best-\d+\.keras)"
_TEMP_PATTERNS = {
    "": [rf"\.{_RUN_FILES}\.tmp(\d+)", r"\.(?:last|best|model)\.tmp(\d+)\.keras", r"\.history\.tmp()"],
    "checkpoint": [rf"\.{_CKPT_FILES}\.tmp(\d+)", r"\.best-\d+\.tmp(\d+)\.keras", r"\.tmp(\d+)-ckpt-\d+\.weights\.h5"],
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
    import re

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


def read_state(run_dir) -> dict | None:
    """The checkpoint state of a run directory, or None when it has no usable checkpoint."""
    p = Path(run_dir) / "checkpoint" / "state.json"
    try:
        state = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not (Path(run_dir) / "checkpoint" / state.get("weights", "")).is_file():
        return None
    return state


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


# ------------------------------------------------------------------ TF pieces


def configure_cpu_replicas(n: int) -> None:
    """Split the CPU into ``n`` logical devices (before TensorFlow initialises), for MirroredStrategy tests."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def cluster_workers() -> int:
    """Number of tasks (chief + workers) named by ``TF_CONFIG`` (0 without it)."""
    try:
        spec = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except ValueError:
        return 0
    return len(spec.get("chief", [])) + len(spec.get("worker", []))


def _list_gpus_quietly():
    """``tf.config.list_physical_devices("GPU")`` (does not initialise the runtime, so a
    MultiWorkerMirroredStrategy can still be made) with the CUDA probe's stderr chatter on
    machines without a GPU silenced (``DRN_VERBOSE=1`` shows it)."""
    import tensorflow as tf

    from drn_tf.core.utils import quiet_stderr

    with quiet_stderr():
        return tf.config.list_physical_devices("GPU")


def pick_strategy(kind: str = "auto", cpu_replicas: int = 0):
    """auto: TF_CONFIG with several workers -> MultiWorkerMirrored; several GPUs (or
    ``cpu_replicas`` > 1 logical CPUs) -> Mirrored; else the default strategy."""
    import tensorflow as tf

    gpus = _list_gpus_quietly()
    if kind == "auto":
        if cluster_workers() > 1:
            kind = "multi-worker"
        elif len(gpus) > 1 or cpu_replicas > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {kind!r}")


def strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def is_chief(strategy) -> bool:
    """True on the one task that writes files: the chief, or worker 0 when the cluster has no chief."""
    if not is_multi_worker(strategy):
        return True
    r = strategy.cluster_resolver
    if r.task_type == "chief":
        return True
    has_chief = "chief" in r.cluster_spec().as_dict()
    return r.task_type == "worker" and int(r.task_id) == 0 and not has_chief


def check_workers_agree(strategy, start_epoch: int) -> None:
    """Every worker must resume from the same epoch (the run directory must be shared);
    raises :class:`ConfigError` on all workers otherwise, instead of a collective hang later."""
    import tensorflow as tf

    value = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([float(start_epoch)], tf.float32))
    seen = np.asarray(strategy.gather(value, axis=0))
    if seen.min() != seen.max():
        raise ConfigError(f"the workers found different checkpoints to resume from (epochs {sorted({int(x) for x in seen.tolist()})}); "
                          "all workers need the same run directory (a shared file system)")


def _warmup_and_decay(cfg: dict) -> tuple[int, int]:
    """(warm-up steps, cosine decay steps) of the cosine schedule over ``train.steps``; a ``--minutes`` run
    warms up over at most 10 % of its fitted steps."""
    s, steps = cfg["schedule"], cfg["train"]["steps"]
    warm = s["warmup_steps"]
    if cfg["train"].get("minutes") is not None:
        warm = min(warm, max(1, steps // 10))
    warm = min(warm, max(0, steps - 1))
    return warm, steps - warm


def build_schedule(cfg: dict):
    import keras

    o, s, steps = cfg["optimizer"], cfg["schedule"], cfg["train"]["steps"]
    lr = o["learning_rate"]
    if s["name"] == "constant":
        return lr
    if s["name"] == "step":
        return keras.optimizers.schedules.ExponentialDecay(lr, s["decay_every"], s["gamma"], staircase=True)
    warm, decay = _warmup_and_decay(cfg)
    if warm == 0:
        return keras.optimizers.schedules.CosineDecay(lr, steps, alpha=s["final_ratio"])
    return keras.optimizers.schedules.CosineDecay(
        lr * 0.01, decay, alpha=s["final_ratio"], warmup_target=lr, warmup_steps=warm
    )


def set_schedule_steps(schedule, cfg: dict) -> None:
    """Refit a cosine ``schedule`` of :func:`build_schedule` to the config's (new) ``train.steps``, in place;
    the train function must be traced again to see it. Other schedules do not depend on the step count."""
    import keras

    if not isinstance(schedule, keras.optimizers.schedules.CosineDecay):
        return
    warm, decay = _warmup_and_decay(cfg)
    if schedule.warmup_steps:
        schedule.warmup_steps, schedule.decay_steps = max(warm, 1), decay
    else:
        schedule.decay_steps = cfg["train"]["steps"]


def build_optimizer(cfg: dict, schedule=None):
    import keras

    o = cfg["optimizer"]
    common = dict(learning_rate=build_schedule(cfg) if schedule is None else schedule, use_ema=o["use_ema"],
                  ema_momentum=o["ema_momentum"])
    if o["clipnorm"]:
        common["clipnorm"] = o["clipnorm"]
    if o["name"] == "adam":
        return keras.optimizers.Adam(beta_1=o["beta_1"], beta_2=o["beta_2"], epsilon=o["epsilon"],
                                     weight_decay=o["weight_decay"], **common)
    if o["name"] == "adamw":
        wd = 1e-4 if o["weight_decay"] is None else o["weight_decay"]
        return keras.optimizers.AdamW(weight_decay=wd, beta_1=o["beta_1"], beta_2=o["beta_2"], epsilon=o["epsilon"],
                                      **common)
    return keras.optimizers.SGD(momentum=o["momentum"], weight_decay=o["weight_decay"], **common)


def build_model(cfg: dict, schedule=None, jit_compile="auto", steps_per_execution: int = 1):
    """The model of a resolved config, compiled with its optimizer (built, so a checkpoint loads into it)
    and the L1 loss; in the current strategy scope / distribution."""
    from drn_tf.models.build import from_preset
    from drn_tf.train.callbacks import l1_loss

    model = from_preset(cfg["model"]["preset"], load_weights=False, **cfg["model"]["overrides"])
    model.compile(optimizer=build_optimizer(cfg, schedule), loss=l1_loss(), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model


def _checkpoint_values(path, preset=None):
    """(model, weight values) of one source of :func:`average_models`."""
    import warnings

    from drn_tf.models.build import from_preset
    from drn_tf.models.resolve import load_model_file

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        model = load_model_file(path)  # ModelError (a ValueError) naming the file and the reason
        return model, model.get_weights()
    run = path.parent.parent
    if (run / "config.yaml").is_file() and path.parent.name == "checkpoint":
        import yaml

        model = build_model(resolve_config(yaml.safe_load((run / "config.yaml").read_text())))
        model.load_weights(path)  # weights and optimizer state: the EMA when the run kept one
        return model, weight_values(model)
    if preset is None:
        raise ValueError(f"{path}: a weights file outside a run's checkpoint/ folder; name its preset")
    model = from_preset(preset, load_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(path)
    return model, model.get_weights()


def average_models(sources, out, preset=None) -> list[Path]:
    """Uniform average of the weights of several checkpoints of one model (checkpoint averaging, as in SWA),
    written to ``out`` as a bare float32 ``.keras`` file (atomically). Returns the files averaged.

    ``sources``: ``.keras`` files (a run's ``model/best/last.keras``, ``checkpoint/best-N.keras``, bundled
    models), a run's ``checkpoint/ckpt-N.weights.h5`` (the EMA weights when the run kept one; the model
    from the run's ``config.yaml``), run directories (all their kept ``ckpt-N.weights.h5``), or bare
    ``.weights.h5`` files of ``preset``. Raises ``ValueError`` when the architectures differ."""
    files: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            found = sorted((src / "checkpoint").glob("ckpt-*.weights.h5"))
            if not found:
                raise FileNotFoundError(f"{src}: no checkpoint/ckpt-*.weights.h5 to average")
            files += found
        elif src.is_file():
            files.append(src)
        else:
            raise FileNotFoundError(f"{src}: no such file or run directory")
    first, total = None, None
    for f in files:
        model, values = _checkpoint_values(f, preset)
        if first is None:
            first, shapes = model, [v.shape for v in values]
            total = [np.asarray(v, np.float64) for v in values]
            continue
        if [v.shape for v in values] != shapes or type(model) is not type(first):
            raise ValueError(f"{f}: not the architecture of {files[0]}")
        for acc, v in zip(total, values):
            acc += v
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_model_file(first, out, [(acc / len(files)).astype(np.float32) for acc in total])
    return files


def init_from(model, source) -> dict:
    """Copy into ``model`` the layers of ``source`` that match by name and weight shapes.

    The upsampler is copied only from a model of the same scale (from another
    scale its shapes differ anyway). ``source``: a ``.keras`` file, a run
    directory (its ``model.keras``, else ``best.keras``/``last.keras``), a
    ``.weights.h5`` file of a DRN with the same layer names, or a preset name
    with bundled weights. Returns ``{"source", "loaded", "skipped"}`` (layer
    names). Call outside ``strategy.scope()``; the assignment reaches every replica.
    """
    import warnings

    from drn_tf.models.presets import PRESETS
    from drn_tf.models.resolve import NoTrainedModelError, resolve

    src_path = Path(str(source)).expanduser()
    if src_path.is_dir():
        for name in ("model.keras", "best.keras", "last.keras"):
            if (src_path / name).is_file():
                src_path = src_path / name
                break
        else:
            raise FileNotFoundError(f"{source}: run directory holds no model.keras, best.keras or last.keras")
    if not src_path.is_file() and str(source) in PRESETS:
        try:
            resolved = resolve(preset=str(source))  # its bundled trained model, never random weights
        except NoTrainedModelError:
            raise FileNotFoundError(f"preset {source} has no bundled weights to start from") from None
    elif not src_path.is_file():
        raise FileNotFoundError(f"{source}: no such model file, run directory or preset with bundled weights")
    elif src_path.name.endswith(".weights.h5"):
        resolved = None
    else:
        resolved = resolve(src_path)
    src_scale = None
    if resolved is None:
        # Load into a copy of ``model`` whose weights are NaN first: what is finite afterwards was in the file.
        source_model = plain_clone(model)
        source_model.set_weights([np.full(w.shape, np.nan, w.dtype) for w in source_model.get_weights()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source_model.load_weights(src_path, skip_mismatch=True)
    else:
        source_model, src_path = resolved.model, resolved.path
        src_scale = getattr(source_model, "scale", None)
    loaded, skipped = [], []
    src_layers = {layer.name: layer for layer in source_model.layers}
    for layer in model.layers:
        if not layer.weights:
            continue
        src = src_layers.get(layer.name)
        sw = src.get_weights() if src is not None else None
        ok = (
            sw is not None
            and [tuple(w.shape) for w in sw] == [tuple(w.shape) for w in layer.weights]
            and all(np.isfinite(w).all() for w in sw)
            and not (layer.name == "upsampler" and src_scale is not None and src_scale != getattr(model, "scale", None))
        )
        if ok:
            layer.set_weights(sw)
            loaded.append(layer.name)
        else:
            skipped.append(layer.name)
    return {"source": str(src_path), "loaded": loaded, "skipped": skipped}


# ------------------------------------------------------------------ validation data


@dataclass
class ValSet:
    name: str
    lrs: list
    hrs: list
    bicubic_psnr: float = float("nan")
    bicubic_ssim: float = float("nan")


def load_val_set(folder, scale: int, degrade: str | None = None) -> ValSet:
    """Benchmark images by the protocol (:func:`drn_tf.core.protocol.read_benchmark`): HR modcropped; LR by
    MATLAB bicubic; grey images stay grey. Unreadable images and images too small for the evaluation
    are skipped with a warning naming each; a folder left with none raises ``FileNotFoundError``.
    ``degrade``: a degradation of the LR (``"jpeg:75"``, as ``drn evaluate --degrade``), for the model
    and the bicubic reference alike."""
    from drn_tf.core.degrade import parse_degradations
    from drn_tf.core.protocol import evaluate_set, read_benchmark, upscale_bicubic

    folder = Path(folder)
    bench = read_benchmark(folder, scale, on_error="skip", label=f"validation set {folder.name}")
    if not bench.lrs:
        raise FileNotFoundError(f"{folder}: no usable validation image ({'; '.join(bench.skipped)})")
    lrs = bench.lrs
    if degrade:
        (op,) = parse_degradations(degrade)
        lrs = [op(lr, key=str(i)) for i, lr in enumerate(lrs)]
    bicubic = evaluate_set(lambda lr: upscale_bicubic(lr, scale), lrs, bench.hrs, scale)
    return ValSet(folder.name, lrs, bench.hrs, *bicubic)


# ------------------------------------------------------------------ the loop under multi-worker


def custom_fit(model, strategy, dataset, *, epochs, initial_epoch, steps_per_epoch, callbacks, verbose):
    """``model.fit`` for a distributed dataset, written as a ``strategy.run`` loop.

    Same train step (``model.train_step``: loss, loss scaling, optimizer, EMA),
    same callbacks (including the progress bar and a History), same end
    (``optimizer.finalize_variable_values``). Works under every strategy;
    used where ``fit`` does not (``MultiWorkerMirroredStrategy``).
    """
    import keras
    import tensorflow as tf

    cbs = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, verbose=verbose, epochs=epochs,
        steps=steps_per_epoch, model=model,
    )

    @tf.function(reduce_retracing=True)
    def train_fn(iterator):
        outputs = strategy.run(model.train_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in outputs.items()}

    iterator = iter(dataset)
    model.stop_training = False
    cbs.on_train_begin()
    logs = {}
    epoch_logs = None
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            cbs.on_train_batch_begin(step)
            logs = train_fn(iterator)
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = {k: float(v) for k, v in logs.items()}
        cbs.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    model.optimizer.finalize_variable_values(model.trainable_weights)
    cbs.on_train_end(logs=epoch_logs)
    return model.history


# ------------------------------------------------------------------ the driver


@dataclass
class TrainResult:
    run_dir: Path
    model: object
    strategy: object
    history: list
    summary: dict
    resumed_from: dict | None


def _log(msg, quiet=False):
    if not quiet:
        print(msg, flush=True)


def train(cfg: dict, run_dir, *, data_root=None, fresh=False, verbose="auto", strategy="auto",
          cpu_replicas=0, quiet=False) -> TrainResult:
    """Run (or resume) the training run of the config ``cfg`` in ``run_dir``.

    ``cfg`` as from :func:`load_config` (resolved here). On TensorFlow, ``strategy``:
    auto | default | mirrored | multi-worker, or a ``tf.distribute.Strategy``, and
    ``cpu_replicas``: split the CPU into that many logical devices first
    (MirroredStrategy on one CPU; must run before TensorFlow initialises). On JAX,
    ``strategy`` is auto (or default): DataParallel over the local devices when there
    are several (``TrainResult.strategy`` is then that distribution, else None).
    ``fresh``: discard an existing checkpoint of ``run_dir``. Raises
    :class:`ConfigError` for unusable configs/run directories and
    ``FileNotFoundError`` for missing data.
    """
    import keras

    saved_policy = keras.config.dtype_policy()
    saved_distribution = keras.distribution.distribution()
    try:
        return _train(cfg, run_dir, data_root=data_root, fresh=fresh, verbose=verbose, strategy=strategy,
                      cpu_replicas=cpu_replicas, quiet=quiet)
    finally:
        keras.config.set_dtype_policy(saved_policy)  # the global policy as it was (a mixed-precision run sets it)
        if keras.distribution.distribution() is not saved_distribution:  # a JAX DataParallel run sets one
            keras.distribution.set_distribution(saved_distribution)


def mixed_precision_policy(setting, have_gpu: bool, cpu_flags=None) -> tuple[str, str | None]:
    """The dtype policy for ``train.mixed_precision`` and, for ``true``, why that one.

    ``true`` means "the fast one here": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native
    bf16 (AVX512-BF16/AMX: 1.9x the float32 training speed on the 2-core AMD EPYC of the README), and
    float32 on other CPUs (bf16 without hardware support is emulated and slower). A policy name is
    used as given."""
    if not setting:
        return "float32", None
    if setting is not True:
        return str(setting), None
    if have_gpu:
        return "mixed_float16", None
    from drn_tf.core.utils import cpu_has_bf16

    if cpu_has_bf16(cpu_flags):
        return "mixed_bfloat16", "no GPU; this CPU has bf16 instructions, training in mixed_bfloat16"
    return "float32", "no GPU and no bf16 instructions on this CPU, training in float32"



def _backend() -> str:
    import keras

    return keras.backend.backend()


def _accelerators() -> list:
    """GPUs (TPUs) of the current backend, without initialising TensorFlow's runtime."""
    if _backend() == "tensorflow":
        return _list_gpus_quietly()
    if _backend() == "jax":
        import jax

        return [d for d in jax.devices() if d.platform != "cpu"]
    return []


def jax_distribution(batch: int):
    """``keras.distribution.DataParallel`` over the local devices when there are several, else None.
    Raises :class:`ConfigError` when the global batch does not split evenly across them."""
    import keras

    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    if batch % len(devices):
        raise ConfigError(f"train.batch_size {batch} is not a multiple of the {len(devices)} devices")
    return keras.distribution.DataParallel(devices=devices)


def tensorboard_callback(setting, log_dir, quiet=False):
    """``keras.callbacks.TensorBoard`` (it needs TensorFlow's summary writer) when ``train.tensorboard``
    is true, or auto and TensorFlow is importable; else None, with one log line saying why."""
    import importlib.util

    if setting is False:
        return None
    if _backend() != "tensorflow" and importlib.util.find_spec("tensorflow") is None:
        if setting is True:
            raise ConfigError("train.tensorboard is true but TensorFlow is not importable here "
                              "(TensorBoard logs need its summary writer)")
        _log("[train] TensorBoard logs off: TensorFlow is not importable here (history.csv has the curves)",
             quiet)
        return None
    import keras

    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)


def fit_to_budget(*, seconds_left: float, epoch_walls: list[float], done_epochs: int) -> int:
    """Total epochs of a ``--minutes`` run after its calibration epochs, whose wall-clock times (training,
    validation, checkpoint, logs) are ``epoch_walls``: as many more as fit in ``seconds_left`` at the time
    of the epochs after the first (the first also compiled), less a reserve of one compilation (the first
    epoch's extra time: the train function is traced again), one epoch (the final files) and 5 % (speed
    noise). Never fewer than ``done_epochs``."""
    timed = epoch_walls[1:] or epoch_walls
    per_epoch = max(sum(timed) / len(timed), 1e-9)
    compile_s = max(0.0, epoch_walls[0] - per_epoch)
    usable = 0.95 * seconds_left - compile_s - per_epoch
    return done_epochs + (int(usable // per_epoch) if usable > 0 else 0)


def jax_matmul_peak_tflops(dtype: str = "bfloat16", n: int | None = None, repeats: int = 20) -> dict:
    """The matrix-multiply rate of JAX's default device: the fastest of ``repeats`` jitted ``n x n`` products
    (``2 n^3`` FLOPs) in ``dtype`` (``n``: 8192 on an accelerator, 1024 on a CPU). The reference a training
    rate (``run.json`` ``train_tflops``) is put against, measured in the same process on the same device."""
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    n = n or (8192 if device.platform != "cpu" else 1024)
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype=jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), dtype=jnp.float32).astype(dtype)
    product = jax.jit(lambda x, y: x @ y)
    product(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        product(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"device": str(getattr(device, "device_kind", device.platform)), "dtype": dtype, "n": n,
            "tflops": 2 * n**3 / best / 1e12}


CALIBRATION_EPOCHS = 3  # epochs a --minutes run trains before it fits train.steps to the budget


def _train(cfg, run_dir, *, data_root, fresh, verbose, strategy, cpu_replicas, quiet) -> TrainResult:
    t_begin = time.monotonic()
    cfg = resolve_config(cfg)
    run_dir = Path(run_dir)
    train_dirs, val_dirs, root = data_paths(cfg, data_root)
    cfg["data"]["root"] = str(root)
    for p in train_dirs + val_dirs:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such data folder (data root {root}; set --data or data.root)")

    import contextlib

    import keras

    backend = _backend()
    on_tf = backend == "tensorflow"
    t = cfg["train"]
    batch = t["batch_size"]
    pipeline = cfg["data"]["pipeline"]
    if pipeline == "auto":
        pipeline = "tf.data" if on_tf else "numpy"
    if pipeline == "tf.data" and not on_tf:
        raise ConfigError(f"data.pipeline tf.data needs the TensorFlow backend (this is {backend}); use numpy")
    if pipeline == "device" and backend != "jax":
        raise ConfigError(f"data.pipeline device needs the JAX backend (this is {backend}); use "
                          f"{'tf.data' if on_tf else 'numpy'}")
    if on_tf:
        import tensorflow as tf

        if cpu_replicas and cpu_replicas > 1:
            configure_cpu_replicas(cpu_replicas)
        # The strategy first: MultiWorkerMirroredStrategy must exist before the runtime initialises.
        if isinstance(strategy, str):
            strategy = pick_strategy(strategy, cpu_replicas)
        if t["deterministic"]:
            tf.config.experimental.enable_op_determinism()
        chief, multi = is_chief(strategy), is_multi_worker(strategy)
        replicas = strategy.num_replicas_in_sync
        scope = strategy.scope
        dist_name = strategy_name(strategy)
    else:
        if strategy not in ("auto", "default", None):
            raise ConfigError(f"--strategy {strategy} is a tf.distribute strategy; on {backend} the local devices "
                              "are used with keras.distribution.DataParallel")
        if cpu_replicas and cpu_replicas > 1:
            raise ConfigError(f"--cpu-replicas splits TensorFlow's CPU; on {backend} start with "
                              f"XLA_FLAGS=--xla_force_host_platform_device_count={cpu_replicas} instead")
        strategy = jax_distribution(batch) if backend == "jax" else None
        if strategy is not None:
            keras.distribution.set_distribution(strategy)  # train() restores the previous one
        chief, multi = True, False
        replicas = len(strategy.device_mesh.devices.flatten()) if strategy is not None else 1
        scope = contextlib.nullcontext
        dist_name = "DataParallel" if strategy is not None else "default"
    if pipeline == "numpy" and multi:
        raise ConfigError("data.pipeline numpy does not shard across workers; use tf.data under multi-worker")
    if t["minutes"] is not None and multi:
        raise ConfigError("train.minutes is not supported under multi-worker (each worker would fit its own step "
                          "count); set train.steps")
    gpus = _accelerators()
    mp, why = mixed_precision_policy(t["mixed_precision"], bool(gpus))
    if why:
        _log(f"[train] --mixed-precision: {why}", quiet)
    keras.config.set_dtype_policy(mp)
    if batch % replicas:
        raise ConfigError(f"train.batch_size {batch} is not a multiple of the {replicas} replicas")
    loop = t["loop"]
    if loop == "auto":
        loop = "custom" if multi else "fit"
    if loop == "custom" and not on_tf:
        raise ConfigError(f"train.loop custom is the tf.distribute loop; on {backend} use fit (or auto)")
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    if not chief:
        verbose = 0

    # ---- run directory, resume
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = run_dir / "checkpoint"
    if chief:
        for f in remove_stale_temp_files(run_dir):
            _log(f"[train] removed {f}, a temporary file of an earlier run that was stopped while writing it", quiet)
    if fresh and chief:
        import shutil

        shutil.rmtree(ckpt_dir, ignore_errors=True)
        for name in ("history.csv", "run.json", "last.keras", "best.keras", "model.keras"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    state = None if fresh else read_state(run_dir)
    if state is not None:
        saved_cfg_path = run_dir / "config.yaml"
        if saved_cfg_path.is_file():
            import yaml

            saved = yaml.safe_load(saved_cfg_path.read_text()) or {}
            # a key the saved run predates had its default there
            diffs = [f"{s}.{k}: {saved.get(s, {}).get(k, DEFAULTS[s][k])!r} -> {cfg[s][k]!r}" for s, k in _RESUME_KEYS
                     if saved.get(s, {}).get(k, DEFAULTS[s][k]) != cfg[s][k]]
            if diffs:
                raise ConfigError(f"{run_dir} holds a checkpoint of a different run ({'; '.join(diffs)}); "
                                  f"use another --out, or --fresh to start over there")
    minutes = t["minutes"]
    budget_extra: dict = {}
    calibrate = False
    if minutes is not None:
        planned = state.get("planned_steps") if state else None
        if planned:  # the budget was fitted by the run this one resumes: keep its step count and schedule
            t["steps"] = int(planned)
            budget_extra["planned_steps"] = int(planned)
        else:
            calibrate = True
    epochs = t["steps"] // t["epoch_steps"]
    start_epoch = int(state["epoch"]) if state else 0
    if multi:
        check_workers_agree(strategy, start_epoch)
    if chief:
        write_file(run_dir / "config.yaml", dump_config(cfg))
    if start_epoch >= epochs:
        _log(f"[train] {run_dir}: already trained {state['step']} steps of {t['steps']} (model.keras); nothing to do"
             " (raise train.steps to continue)", quiet)
        from drn_tf.models.drn import load_model

        path = run_dir / "model.keras"
        model = load_model(path) if path.is_file() else None
        summary = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
        return TrainResult(run_dir, model, strategy, read_history(run_dir / "history.csv"), summary, state)

    # ---- data
    from drn_tf.data.patches import PatchSampler, load_pairs

    scale, patch = cfg["model"]["scale"], cfg["data"]["patch_size"]
    t0 = time.monotonic()
    lrs, hrs, names = load_pairs(train_dirs, scale, cache_dir=cfg["data"]["cache_dir"], min_lr_size=patch)
    val_sets = [load_val_set(p, scale, cfg["data"]["val_degrade"]) for p in val_dirs] if chief else []  # only the chief validates
    _log(f"[data] {len(lrs)} training images ({', '.join(str(p) for p in train_dirs)}), "
         f"validation{' on ' + cfg['data']['val_degrade'] + ' LR' if cfg['data']['val_degrade'] else ''}: {', '.join(f'{v.name} ({len(v.lrs)} images, bicubic {v.bicubic_psnr:.2f} dB)' for v in val_sets) or 'none'}"
         f"; {time.monotonic() - t0:.1f} s", quiet)
    start_step = start_epoch * t["epoch_steps"]
    from drn_tf.core.degrade import TrainDegradation

    degrade = TrainDegradation.from_config(cfg["data"]["degrade"])
    if degrade.enabled:
        _log(f"[data] degraded LR for {degrade.prob:.0%} of the patches: {degrade.pool} copies of each image, JPEG "
             f"quality {degrade.jpeg_quality[0]}-{degrade.jpeg_quality[1]}"
             + (f", noise sigma {degrade.noise_sigma[0]:g}-{degrade.noise_sigma[1]:g} on {degrade.noise_prob:.0%}"
                if degrade.noise_prob > 0 else ""), quiet)
    if pipeline == "tf.data":
        from drn_tf.data.tfdata import make_train_dataset

        # replicas fed by this worker's input pipeline
        local_replicas = len(strategy.extended.worker_devices) if multi else replicas

        def dataset_fn(ctx):
            return make_train_dataset(
                None, scale, patch_size=patch, batch_size=batch, steps_per_epoch=t["epoch_steps"], seed=t["seed"],
                augment=cfg["data"]["augment"], start_step=start_step * local_replicas, input_context=ctx,
                pairs=(lrs, hrs), degrade=degrade,
            )

        dataset = strategy.distribute_datasets_from_function(dataset_fn)
    elif pipeline == "device":  # patches cut on the accelerator; batch g a function of (seed, g)
        from drn_tf.data.device import DeviceSampler

        sampler = DeviceSampler(lrs, hrs, scale, patch_size=patch, batch_size=batch, seed=t["seed"],
                                augment=cfg["data"]["augment"], degrade=degrade)
        _log(f"[data] training set on the device: {sampler.nbytes / 1e6:.0f} MB of uint8", quiet)
        dataset = sampler.stream(start_step)
    else:  # the same batches as the tf.data stream, from the same global step
        sampler = PatchSampler(lrs, hrs, scale, patch_size=patch, batch_size=batch, steps_per_epoch=t["epoch_steps"],
                               seed=t["seed"], augment=cfg["data"]["augment"], degrade=degrade)
        dataset = sampler.stream(start_step, workers=cfg["data"]["workers"])

    # ---- model and optimizer
    keras.utils.set_random_seed(t["seed"])
    jit = t["jit_compile"]
    if jit == "auto":
        jit = bool(gpus) or not on_tf  # JAX without jit runs op by op
    schedule = build_schedule(cfg)
    with scope():
        model = build_model(cfg, schedule, jit_compile=jit,
                            steps_per_execution=t["steps_per_execution"] if loop == "fit" else 1)
    resumed = None
    best, best_epoch, wall_offset = -float("inf"), None, 0.0
    if state is not None:
        model.load_weights(ckpt_dir / state["weights"])
        got = int(np.asarray(model.optimizer.iterations.numpy()))
        if got != start_epoch * t["epoch_steps"]:
            raise ConfigError(f"{ckpt_dir / state['weights']}: optimizer step {got} does not match epoch "
                              f"{start_epoch} x {t['epoch_steps']} steps")
        resumed = dict(state)
        best = state.get("best_val_psnr") or -float("inf")
        best_epoch = state.get("best_epoch")
        wall_offset = float(state.get("wall_s", 0.0))
        written_by = state.get("backend", "tensorflow")
        _log(f"[train] resuming {run_dir} from epoch {start_epoch} (step {got}) of {epochs}"
             + (f" (checkpoint written under {written_by})" if written_by != backend else ""), quiet)
    elif cfg["model"]["init_from"]:
        try:
            rep = init_from(model, cfg["model"]["init_from"])
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.init_from: {exc}") from None
        _log(f"[train] initialised {len(rep['loaded'])} layers from {rep['source']} "
             f"(skipped: {', '.join(rep['skipped']) or 'none'})", quiet)
        if not rep["loaded"]:
            raise ConfigError(f"model.init_from {rep['source']}: no layer matches this model")
    if chief and state is None:
        (run_dir / "history.csv").unlink(missing_ok=True)

    # ---- callbacks
    from drn_tf.train.callbacks import (
        Checkpoint,
        Deadline,
        EpochWallClock,
        HistoryCSV,
        StepStats,
        Validation,
    )

    stats = StepStats(batch, t["epoch_steps"], wall_offset)
    save_clone = plain_clone(model)  # float32, outside the scope: writes the .keras files
    eval_clone = plain_clone(model, dtype_policy=None) if val_sets and chief else save_clone
    val_cb = Validation(val_sets if chief else [], scale, t["val_every"], epochs, eval_clone)
    deadline = Deadline(t_begin + 60.0 * minutes) if minutes is not None else None
    callbacks = [stats] + ([deadline] if deadline else []) + [val_cb]  # the deadline first: validation sees the stop
    ckpt_cb = None
    if chief:
        hist_path = run_dir / "history.csv"
        if state is not None:
            rows = [r for r in read_history(hist_path) if isinstance(r.get("epoch"), int) and r["epoch"] <= start_epoch]
            keys = ["epoch", "step", "loss", "lr", *val_cb.keys(), "patches_per_s", "wall_s"]
            text = io.StringIO(newline="")
            w = csv.DictWriter(text, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow(r)
            write_file(hist_path, text.getvalue())
        extra = {"strategy": dist_name, "replicas": replicas, **budget_extra}
        best_file = state.get("best_file") if state else None
        if best_file and (ckpt_dir / best_file).is_file():
            publish(ckpt_dir / best_file, run_dir / "best.keras")  # the best of the committed epochs
        else:
            best_file = None
        ckpt_cb = Checkpoint(run_dir, save_clone, t["keep_checkpoints"], best, best_epoch, wall_offset, extra,
                             best_file, checkpoint_need(model, save_clone, validating=bool(val_sets)))
        callbacks += [HistoryCSV(hist_path, ["step", "loss", "lr", *val_cb.keys(), "patches_per_s", "wall_s"]),
                      ckpt_cb]
        tb = tensorboard_callback(t["tensorboard"], run_dir / "tensorboard", quiet)
        if tb is not None:
            callbacks.append(tb)
    callbacks.append(keras.callbacks.TerminateOnNaN())
    if deadline is not None:
        callbacks.append(EpochWallClock(deadline))  # last: the epoch's wall-clock time, callbacks included

    _log(f"[train] {cfg['model']['preset']} x{scale}, {model.count_params():,d} parameters; backend {backend}; "
         f"{dist_name} with {replicas} replica(s){' (chief)' if multi and chief else ''}, "
         f"loop: {'model.fit' if loop == 'fit' else 'strategy.run'}, input: {pipeline}; batch {batch} "
         f"({batch // replicas} per replica), patch {patch}; steps {start_step}.."
         f"{'(fitted to ' + format(minutes, 'g') + ' minutes)' if calibrate else t['steps']} "
         f"in epochs of {t['epoch_steps']}; policy {keras.config.dtype_policy().name}; run dir {run_dir}", quiet)

    def run_fit(first, last):
        if loop == "fit":
            return model.fit(dataset, epochs=last, initial_epoch=first, steps_per_epoch=t["epoch_steps"],
                             callbacks=callbacks, verbose=verbose, shuffle=False)
        return custom_fit(model, strategy, dataset, epochs=last, initial_epoch=first,
                          steps_per_epoch=t["epoch_steps"], callbacks=callbacks, verbose=verbose)

    t_fit = time.monotonic()
    histories = []
    if calibrate:
        # --minutes: train a few epochs (inside the warm-up), measure, fix train.steps, then the rest of the run
        # with the schedule over the fitted count (the train function is traced again with it).
        first_stop = min(epochs, start_epoch + CALIBRATION_EPOCHS)
        histories.append(run_fit(start_epoch, first_stop))
        done = start_epoch + len(histories[-1].epoch)
        walls = deadline.epoch_walls
        if walls and not (deadline.stopped_epoch or model.stop_training):
            total = fit_to_budget(seconds_left=deadline.deadline - time.monotonic(), epoch_walls=walls,
                                  done_epochs=done)
        else:  # out of time already, or stopped (NaN loss)
            total = done
        epochs = total
        t["steps"] = total * t["epoch_steps"]
        set_schedule_steps(schedule, cfg)
        if ckpt_cb is not None:
            ckpt_cb.extra["planned_steps"] = t["steps"]
        val_cb.last_epoch = total
        timed = walls[1:] or walls or [float("nan")]
        _log(f"[train] --minutes {minutes:g}: epochs of {t['epoch_steps']} steps take {sum(timed) / len(timed):.2f} s "
             f"(the first {(walls or timed)[0]:.1f} s, compiling) -> {t['steps']} steps ({total} epochs)", quiet)
        if chief:
            write_file(run_dir / "config.yaml", dump_config(cfg))
            st = read_state(run_dir) if ckpt_cb is not None and done > start_epoch else None
            if st:  # the commit point names the plan from now on
                st["planned_steps"] = t["steps"]
                write_file(ckpt_dir / "state.json", json.dumps(st, indent=2), ckpt_cb.need)
        if total > done:
            state_after = read_state(run_dir) if cfg["optimizer"]["use_ema"] else None
            if state_after:
                model.load_weights(ckpt_dir / state_after["weights"])  # fit ended by writing the EMA into the weights
            model.train_function = None  # traced again with the fitted schedule
            histories.append(run_fit(done, total))
    else:
        histories.append(run_fit(start_epoch, epochs))
    fit_s = time.monotonic() - t_fit
    if deadline is not None and deadline.stopped_epoch:
        _log(f"[train] --minutes {minutes:g}: stopped after epoch {deadline.stopped_epoch} of {epochs}: the next "
             "epoch would have ended past the budget", quiet)
    history = {}
    for h in histories:
        for k, v in h.history.items():
            history.setdefault(k, []).extend(v)
    steps_now = int(np.asarray(model.optimizer.iterations.numpy()))
    session_steps = steps_now - start_step
    from drn_tf.models.analysis import count_macs, model_config

    train_flops = 6 * count_macs(model_config(model), patch, patch)  # 3 x forward, 2 FLOPs per multiply-add
    train_s = stats.train_seconds  # epoch time up to the end of its last step: no validation, no saving
    summary = {
        "preset": cfg["model"]["preset"],
        "scale": scale,
        "params": int(model.count_params()),
        "backend": backend,
        "strategy": dist_name,
        "replicas": replicas,
        "loop": "model.fit" if loop == "fit" else "strategy.run",
        "pipeline": pipeline,
        "dtype_policy": keras.config.dtype_policy().name,
        "steps": steps_now,
        "planned_steps": t["steps"],
        "minutes": minutes,
        "patches_seen": steps_now * batch,
        "batch_size": batch,
        "patch_size": patch,
        "train_flops_per_patch": train_flops,
        "session_steps": session_steps,
        "session_fit_s": round(fit_s, 1),
        "session_train_s": round(train_s, 1),
        "session_validation_s": round(val_cb.seconds, 1),
        "session_checkpoint_s": round(ckpt_cb.seconds, 1) if ckpt_cb else None,
        "patches_per_s": round(session_steps * batch / max(train_s, 1e-9), 2) if session_steps else None,
        "train_tflops": round(session_steps * batch * train_flops / max(train_s, 1e-9) / 1e12, 4) if session_steps
        else None,
        "wall_s": round(wall_offset + (time.monotonic() - t_begin), 1),
        "resumed_from": resumed,
        "best_val_psnr": None if ckpt_cb is None or ckpt_cb.best == -float("inf") else ckpt_cb.best,
        "best_epoch": None if ckpt_cb is None else ckpt_cb.best_epoch,
        "val_sets": {v.name: {"images": len(v.lrs), "bicubic_psnr": v.bicubic_psnr, "bicubic_ssim": v.bicubic_ssim}
                     for v in val_sets},
        "final": {k: (float(v[-1]) if len(v) else None) for k, v in history.items()},
        "host": platform.node(),
        "device": _device_text(gpus),
        "keras": keras.__version__,
        **_framework_versions(backend),
    }
    if chief:
        # the loop ended by finalize_variable_values: EMA weights are now the model's
        save_model_file(model, run_dir / "model.keras", weight_values(model, use_ema=False), save_clone,
                        need=ckpt_cb.need)
        write_file(run_dir / "run.json", json.dumps(summary, indent=2, default=str), ckpt_cb.need)
        _log(f"[done] {steps_now} steps; this session {session_steps} steps in {fit_s:.0f} s "
             f"({summary['patches_per_s']} patches/s training); best val PSNR {summary['best_val_psnr']}; "
             f"model: {run_dir / 'model.keras'}", quiet)
    return TrainResult(run_dir, model, strategy, read_history(run_dir / "history.csv") if chief else [],
                       summary, resumed)


def _device_text(gpus) -> str:
    if not gpus:
        return f"CPU ({os.cpu_count()} cores) {platform.processor() or platform.machine()}"
    kind = getattr(gpus[0], "device_kind", None)
    return f"{len(gpus)} GPU(s)" + (f" {kind}" if kind else "")


def _framework_versions(backend: str) -> dict:
    if backend == "tensorflow":
        import tensorflow as tf

        return {"tensorflow": tf.__version__}
    if backend == "jax":
        import jax

        return {"jax": jax.__version__}
    return {}
