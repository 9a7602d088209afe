"""The training config: its schema (every key, its default and meaning), reading it (YAML file, options,
``--set section.key=value``) and checking it.

:data:`SCHEMA` lists the keys; :data:`CHECKS` says, key by key, what a value must be (the choices of
``train.loss``, ``schedule.name`` and ``optimizer.name`` are the tables of :mod:`drn_tf.train.recipe`);
:func:`resolve_config` applies them and fills the derived values. Nothing here imports Keras or a
framework, so ``drn train --help`` and ``--print-config`` stay fast.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

from drn_tf.core.utils import check_float, check_int
from drn_tf.train.inputs import PIPELINES
from drn_tf.train.recipe import LOSSES, OPTIMIZERS, SCHEDULES, choices_help, refittable_schedules

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
        "loss": ("l1", choices_help(LOSSES)),
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
        "name": ("adam", choices_help(OPTIMIZERS)),
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
        "name": ("cosine", choices_help(SCHEDULES)),
        "warmup_steps": (1000, "cosine: linear warm-up steps"),
        "final_ratio": (0.01, "cosine: final learning rate / peak"),
        "decay_every": (50000, "step: steps between decays"),
        "gamma": (0.5, "step: decay factor"),
    },
}

DEFAULTS = {sec: {k: copy.deepcopy(v[0]) for k, v in keys.items()} for sec, keys in SCHEMA.items()}

# Keys whose change makes an existing checkpoint unusable.
RESUME_KEYS = [("model", "preset"), ("model", "scale"), ("model", "overrides"), ("data", "patch_size"),
               ("data", "degrade"), ("train", "batch_size"), ("train", "epoch_steps"), ("train", "seed"),
               ("optimizer", "name"), ("optimizer", "use_ema")]


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


# ------------------------------------------------------------------ reading


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
            raise ConfigError(yaml_problem(path, exc)) from None
        cfg = merge(cfg, data, str(path))
    if overrides:
        cfg = merge(cfg, overrides, "options")
    for text in sets:
        sec, k, v = parse_override(text)
        cfg = merge(cfg, {sec: {k: v}}, f"--set {text}")
    return cfg


def yaml_problem(path, exc) -> str:
    """A YAML syntax error in one line: ``FILE:LINE:COLUMN: not valid YAML: the problem (the context and where
    it started)``; PyYAML's own message spans seven lines with the text quoted."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and (mark is None or (start.line, start.column) != (mark.line, mark.column)):
        context += f" started at line {start.line + 1}, column {start.column + 1}"
    return f"{where}: not valid YAML: {problem}" + (f" ({context})" if context else "")


def dump_config(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------ what a value must be


def integer(low=None):
    return lambda name, v: check_int(name, v, low, error=ConfigError)


def number(low=None, optional=False, positive=False):
    """A finite float ``>= low`` (YAML 1.1 strings such as ``"1e-3"`` read as numbers); ``optional``: null
    allowed; ``positive``: ``> 0``."""

    def check(name, v):
        if v is None and optional:
            return None
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        v = check_float(name, v, low, error=ConfigError)
        if positive and v <= 0:
            raise ConfigError(f"{name} must be > 0; got {v!r}")
        return v

    return check


def flag(name, v) -> bool:
    return bool(v)


def _words(values) -> str:
    """``"a, b or c"``, with YAML's spelling of booleans."""
    text = [{True: "true", False: "false"}.get(v, v) if isinstance(v, bool) else str(v) for v in values]
    return ", ".join(text[:-1]) + " or " + text[-1] if len(text) > 1 else text[0]


def choice(*allowed, table=None, aliases=(), to=None, lower=False):
    """One of ``allowed`` or of the keys of ``table`` (read when the value is checked: an entry added to the
    table is a choice); ``aliases`` are read as ``to``; ``lower``: names are case-insensitive."""

    def check(name, v):
        if lower:
            v = str(v).lower()
        if v in aliases:
            v = to
        choices = [*allowed, *(table or ())]
        if v not in choices:
            raise ConfigError(f"{name} must be {_words(choices)}; got {v!r}")
        return v

    return check


def folders(name, v) -> list[str]:
    if v is None:
        v = []
    if isinstance(v, (str, os.PathLike)):
        v = [v]
    if not isinstance(v, list):
        raise ConfigError(f"{name} must be a list of folders, got {v!r}")
    return [str(x) for x in v]


def train_degradation(name, v) -> dict:
    from drn_tf.core.degrade import TrainDegradation

    try:
        return TrainDegradation.from_config(v).to_config()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def val_degradation(name, v) -> str | None:
    from drn_tf.core.degrade import parse_degradations

    try:
        ops = [] if v in (None, "", "none", "clean") else parse_degradations(v)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if len(ops) > 1:
        raise ConfigError(f"{name} takes one degradation (e.g. jpeg:75), got {v!r}")
    return ops[0].label if ops else None


# section -> key -> check(name, value) -> value; model.preset/scale/overrides are checked together
# (:func:`_resolve_model`), the keys not named here are taken as they are.
CHECKS: dict[str, dict] = {
    "data": {
        "train": folders, "val": folders, "patch_size": integer(4), "augment": flag,
        "degrade": train_degradation, "val_degrade": val_degradation,
        "pipeline": choice("auto", table=PIPELINES), "workers": integer(0),
    },
    "train": {
        "batch_size": integer(1), "steps": integer(1), "epoch_steps": integer(1), "val_every": integer(1),
        "seed": integer(0), "steps_per_execution": integer(1), "keep_checkpoints": integer(1),
        "minutes": number(0.0, optional=True, positive=True),
        "loss": choice(table=LOSSES, lower=True),
        "mixed_precision": choice(False, True, "mixed_float16", "mixed_bfloat16",
                                  aliases=(None, "none", "false", "float32"), to=False),
        "jit_compile": choice("auto", True, False), "loop": choice("auto", "fit", "custom"),
        "deterministic": flag, "tensorboard": choice("auto", True, False),
    },
    "optimizer": {
        "name": choice(table=OPTIMIZERS, lower=True), "learning_rate": number(0.0),
        **{key: number(0.0) for key in ("beta_1", "beta_2", "epsilon", "momentum", "ema_momentum")},
        "weight_decay": number(0.0, optional=True), "clipnorm": number(0.0, optional=True), "use_ema": flag,
    },
    "schedule": {
        "name": choice(table=SCHEDULES, lower=True), "warmup_steps": integer(0), "decay_every": integer(1),
        "final_ratio": number(0.0), "gamma": number(0.0),
    },
}


def _resolve_model(m: dict) -> None:
    """Preset and scale (a family name plus a scale names the preset), constructor overrides, init_from."""
    from drn_tf.models.presets import PRESETS, SCALES

    preset, scale = m["preset"], m["scale"]
    if scale is not None:
        scale = check_int("model.scale", scale, 1, error=ConfigError)
    if preset in PRESETS:
        pscale = PRESETS[preset]["config"]["scale"]
        if scale is not None and scale != pscale:
            raise ConfigError(f"model.scale {scale} does not match preset {preset} (x{pscale}); "
                              f"use preset {preset.rsplit('_x', 1)[0]}_x{scale}")
        m["scale"] = pscale
    elif f"{preset}_x{scale}" in PRESETS:
        m["preset"], m["scale"] = f"{preset}_x{scale}", scale
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


def resolve_config(cfg: dict) -> dict:
    """Check types and values and fill derived values; returns a new dict. Raises :class:`ConfigError`."""
    cfg = merge(DEFAULTS, cfg)
    _resolve_model(cfg["model"])
    for sec, checks in CHECKS.items():
        for key, check in checks.items():
            cfg[sec][key] = check(f"{sec}.{key}", cfg[sec][key])
    if not cfg["data"]["train"]:
        raise ConfigError("data.train names no folder")
    t = cfg["train"]
    t["steps"] = math.ceil(t["steps"] / t["epoch_steps"]) * t["epoch_steps"]  # whole epochs
    name = cfg["schedule"]["name"]
    if t["minutes"] is not None and SCHEDULES[name].refit is None:
        raise ConfigError(f"schedule.name {name} cannot follow the step count a wall-clock budget (train.minutes) "
                          f"fits; use {_words(refittable_schedules())}, or set train.steps")
    return cfg


def default_data_root() -> Path:
    """The data folder of the config's ``data.root: null`` (:func:`drn_tf.core.utils.default_data_root`)."""
    from drn_tf.core.utils import default_data_root as root

    return root()


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
