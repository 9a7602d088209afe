"""(split from drn_tf.export.tflite)"""

from __future__ import annotations

import os
from pathlib import Path

from drn_tf.core.utils import parse_size as _parse_size

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
SERVING_INPUT = "images"
SERVING_OUTPUT = "sr_images"
BYTES_SIGNATURE = "upscale_bytes"
BYTES_INPUT = "image_bytes"
BYTES_OUTPUT = "sr_image_bytes"
TFLITE_INPUT = "lr_image"
TFLITE_OUTPUT = "sr_image"
METADATA_NAME = "drn_tf"


class ExportError(Exception):
    """An export that cannot be done as asked; the message says why (one line)."""


def default_data_dir() -> Path:
    """The project's data folder (:func:`drn_tf.core.utils.default_data_root`: ``$DRN_DATA``, ``../shared/data``)."""
    from drn_tf.core.utils import default_data_root

    return default_data_root()


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def model_scale(model) -> int:
    from drn_tf.models.resolve import ModelError
    from drn_tf.models.resolve import model_scale as _scale

    try:
        return _scale(model)
    except ModelError as exc:
        raise ExportError(str(exc)) from None


def model_radius(model) -> int:
    """Receptive radius in LR pixels (the tile overlap that makes tiling exact)."""
    from drn_tf.models.resolve import model_receptive_radius

    radius = model_receptive_radius(model)
    if radius is None:
        raise ExportError("cannot tell the model's receptive radius (not a DRN model)")
    return radius


def load_export_model(model_path=None, preset: str | None = None):
    """``(model, description)`` from a ``.keras`` file or a preset (bundled weights if present)."""
    from drn_tf.models.drn import DRN, bundled_model_path, load_model

    if model_path:
        try:
            return load_model(model_path), f"{model_path}"
        except (OSError, ValueError, TypeError) as exc:
            raise ExportError(f"{model_path}: cannot load model: {exc}") from None
    preset = preset or "drn_x2"
    try:
        bundled = bundled_model_path(preset)
        model = DRN.from_preset(preset, load_weights=bundled is not None)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if bundled:
        return model, f"preset {preset} (bundled weights {bundled.name})"
    return model, f"preset {preset} (no bundled weights: freshly initialised, untrained)"


# ---------------------------------------------------------------- TFLite


def parse_size(text) -> tuple[int, int] | None:
    """``"HxW"`` -> ``(H, W)``; None passes through."""
    return _parse_size(text, error=ExportError)
