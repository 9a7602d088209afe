"""What every export shares: names, errors and the model to export.

The tensor and signature names of the exported SavedModel and TFLite files
(``SERVING_*``, ``BYTES_*``, ``TFLITE_*``, the metadata key), the quantisation
choices, :class:`ExportError` (one-line reasons), and the model facts an export
needs as ``ExportError``: :func:`load_export_model` (by the rules of
:func:`drn_tf.models.resolve.resolve`, random weights allowed and reported),
:func:`model_scale`, :func:`model_radius`. Used by
:mod:`drn_tf.export.savedmodel`, :mod:`drn_tf.export.int8`,
:mod:`drn_tf.export.tflite` and the ``drn export`` command.
"""

from __future__ import annotations

import os
from pathlib import Path

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
    """The :class:`drn_tf.models.resolve.Resolved` model of a ``.keras`` file, else of the preset
    (default ``drn_x2``): its bundled weights, else freshly initialised (``trained=False``: sizes and
    latencies do not depend on the weights; the caller says the model is untrained)."""
    from drn_tf.models.resolve import ModelError, resolve

    try:
        return resolve(model_path or None, preset, allow_untrained=True)
    except ModelError as exc:
        raise ExportError(str(exc)) from None
