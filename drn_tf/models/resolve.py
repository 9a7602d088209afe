"""(split from drn_tf.inference.upscale)"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np


class ModelError(ValueError):
    """No usable model: missing/corrupt file, wrong scale, no bundled weights."""


# ---------------------------------------------------------------- backend start-up


# ---------------------------------------------------------------- model facts


def model_scale(model) -> int:
    """Upscaling factor of ``model``: from its config, else from a probe run."""
    try:
        cfg = model.get_config()
        if "scale" in cfg:
            return int(cfg["scale"])
    except Exception:  # noqa: BLE001 - any config problem: probe instead
        pass
    probe = np.zeros((1, 8, 8, 3), np.float32)
    out = np.asarray(model.predict_on_batch(probe))
    if out.shape[1] % 8 or out.shape[2] % 8 or out.shape[1] != out.shape[2]:
        raise ModelError(f"cannot infer the scale of the model: 8x8 input gave {out.shape[1:3]}")
    return out.shape[1] // 8


def model_receptive_radius(model) -> int | None:
    """Receptive radius (LR pixels) of ``model``; None if it cannot be told."""
    radius = getattr(model, "receptive_radius", None)
    if isinstance(radius, int):
        return radius
    try:
        cfg = model.get_config()
        from drn_tf.models.drn import receptive_radius
        from drn_tf.models.layers import upsampler_stages

        return receptive_radius(
            int(cfg["num_groups"]),
            int(cfg["num_blocks"]),
            len(upsampler_stages(int(cfg["scale"]), cfg.get("upsampler", "single"))),
        )
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------- model resolution

_MODEL_CACHE: dict = {}


def no_bundled_model_message(preset: str) -> str:
    return f"no trained model bundled for preset {preset}; pass --model FILE"


def load_model_file(path, scale: int | None = None):
    """Load a ``.keras`` file with a clear :class:`ModelError` for every failure."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a .keras model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty model file (0 bytes)")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a valid .keras model file (not a zip archive: corrupt or truncated?)")
    from drn_tf.models.drn import load_model

    try:
        model = load_model(path)
    except Exception as exc:  # noqa: BLE001 - zip/h5/json/keras errors all mean "corrupt"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:160].rsplit(" ", 1)[0] + " ..."
        raise ModelError(f"{path}: cannot load model ({reason})") from None
    check_scale(model, scale, str(path))
    return model


def check_scale(model, scale: int | None, name: str = "model") -> int:
    s = model_scale(model)
    if scale is not None and int(scale) != s:
        raise ModelError(f"{name} is a x{s} model, but x{scale} was asked for (--scale {scale})")
    return s


def resolve_model(model=None, preset: str | None = None, scale: int | None = None):
    """``model`` (keras.Model or path) else ``preset`` else ``drn_x{scale}``.

    A preset is used only if its trained model is bundled
    (``assets/<preset>.keras``); random weights are never used silently.
    """
    if model is not None:
        if isinstance(model, (str, os.PathLike)):
            model_path = model
            key = ("file", str(Path(model).resolve()))
            st = Path(model).stat() if Path(model).is_file() else None
            key += ((st.st_mtime_ns, st.st_size) if st else (None,))
            if key not in _MODEL_CACHE:
                _MODEL_CACHE.clear()
                _MODEL_CACHE[key] = load_model_file(model)
            model = _MODEL_CACHE[key]
            check_scale(model, scale, str(model_path))
        else:
            check_scale(model, scale)
        return model
    from drn_tf.models.drn import DRN, bundled_model_path
    from drn_tf.models.presets import get_preset

    name = preset or f"drn_x{2 if scale is None else int(scale)}"
    try:
        get_preset(name)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    path = bundled_model_path(name)
    if path is None:
        raise ModelError(no_bundled_model_message(name))
    key = ("preset", name, str(path))
    if key not in _MODEL_CACHE:
        try:
            _MODEL_CACHE[key] = DRN.from_preset(name)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: cannot load the bundled model ({exc})") from None
    model = _MODEL_CACHE[key]
    check_scale(model, scale, f"preset {name}")
    return model
