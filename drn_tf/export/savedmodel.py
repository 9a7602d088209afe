"""SavedModel exports: for TF Serving, and the float graphs the TFLite converter starts from.

* :func:`export_saved_model` writes ``DIR/<version>/`` (the layout TF Serving
  watches, written under a temporary name and renamed) with two signatures:
  ``serving_default`` (uint8 image batch -> uint8 SR batch) and
  ``upscale_bytes`` (PNG/JPEG bytes -> PNG bytes);
* :func:`gpu_friendly_model` rewrites the pixel shuffles as fixed-weight
  transposed convolutions (the LiteRT GPU delegate lacks ``DEPTH_TO_SPACE``);
* ``_float_saved_model`` is the float32 ``lr_image`` -> ``sr_image`` graph that
  :mod:`drn_tf.export.tflite` converts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from drn_tf.export.common import (
    BYTES_INPUT,
    BYTES_OUTPUT,
    BYTES_SIGNATURE,
    SERVING_INPUT,
    SERVING_OUTPUT,
    TFLITE_INPUT,
    TFLITE_OUTPUT,
    ExportError,
    _tf,
)

# ---------------------------------------------------------------- GPU-friendly rewrite


def gpu_friendly_model(model):
    """A copy of ``model`` whose pixel shuffles are fixed-weight transposed convolutions.

    The LiteRT GPU delegate's documented op list has ``TRANSPOSE_CONV`` but
    not ``DEPTH_TO_SPACE`` (older delegates reject it: "DEPTH_TO_SPACE:
    Operation is not supported"). The rewrite shares every weight with
    ``model`` and gives identical outputs (one-hot kernels: exact products
    with 1 and sums with exact zeros).
    """
    import keras

    from drn_tf.models import layers as L

    replaced = []

    def clone(layer):
        if isinstance(layer, L.Upsampler):
            config = dict(layer.get_config(), shuffle_method="transposed_conv")
            new = L.Upsampler.from_config(config)
            replaced.append((layer, new))
            return new
        return layer

    copy = keras.models.clone_model(model, clone_function=clone)
    if not replaced:
        raise ExportError("the model has no DRN Upsampler layer to rewrite")
    for old, new in replaced:
        new.set_weights(old.get_weights())
    return copy


# ---------------------------------------------------------------- SavedModel


def _uint8_image(tf, y):
    """Float [0, 1] -> uint8 exactly like :func:`drn_tf.core.metrics.to_uint8` (clip, round half up)."""
    return tf.cast(tf.floor(tf.clip_by_value(y, 0.0, 1.0) * 255.0 + 0.5), tf.uint8)


def _next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def export_saved_model(model, base_dir, version: int | None = None, overwrite: bool = False) -> Path:
    """Write ``base_dir/<version>/`` (TF Serving layout); returns that folder.

    ``version`` defaults to one more than the highest numeric subfolder (1
    for a new folder), so re-exporting publishes a new version that TF
    Serving picks up. The folder is written under a temporary name and
    renamed, so a server watching ``base_dir`` never loads half a model.
    """
    import keras

    tf = _tf()
    base = Path(base_dir)
    if base.exists() and not base.is_dir():
        raise ExportError(f"{base} exists and is not a folder")
    base.mkdir(parents=True, exist_ok=True)
    version = _next_version(base) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    target = base / str(version)
    if target.exists() and not overwrite:
        raise ExportError(f"{target} already exists (use another --version, or --overwrite)")
    channels = int(model.inputs[0].shape[-1])

    def upscale(images):
        x = tf.cast(images, tf.float32) / 255.0
        return _uint8_image(tf, model(x, training=False))

    def serve(images):
        return {SERVING_OUTPUT: upscale(images)}

    def serve_bytes(image_bytes):
        def one(data):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            image.set_shape([None, None, channels])
            return tf.io.encode_png(upscale(image[None])[0])

        encoded = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))
        return {BYTES_OUTPUT: encoded}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name=SERVING_INPUT)],
    )
    archive.add_endpoint(
        name=BYTES_SIGNATURE,
        fn=serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)],
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        archive.write_out(str(tmp), verbose=False)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _float_saved_model(model, path, input_size=None) -> None:
    """SavedModel with one signature ``lr_image`` float [0, 1] -> ``sr_image`` clipped to [0, 1]."""
    import keras

    tf = _tf()
    channels = int(model.inputs[0].shape[-1])
    shape = [None, None, None, channels] if input_size is None else [1, input_size[0], input_size[1], channels]

    def serve(lr_image):
        return {TFLITE_OUTPUT: tf.clip_by_value(model(lr_image, training=False), 0.0, 1.0)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default", fn=serve, input_signature=[tf.TensorSpec(shape, tf.float32, name=TFLITE_INPUT)]
    )
    archive.write_out(str(path), verbose=False)
