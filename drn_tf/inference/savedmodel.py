"""The SavedModel runtime: an exported SavedModel's ``serving_default`` signature
(``drn export saved-model``: uint8 pixels in, uint8 pixels out) in TensorFlow.

The receptive radius is read from the variables: the sum of ``(k - 1) / 2``
over every ``k x k`` convolution kernel, an upper bound for any stride-1
convolutional network (for DRN it equals :func:`drn_tf.models.drn.receptive_radius`;
tested), so tiles with that overlap stitch exactly like the Keras model's. The
output is rounded to uint8 per tile; every output pixel comes from one tile
core, so this equals rounding the stitched image.
"""

from __future__ import annotations

import numpy as np

from drn_tf.inference.runtime import Runtime, uint8_pixels


class SavedModelRuntime(Runtime):
    """``serving_default`` of the SavedModel in ``path`` (a version folder: ``saved_model.pb`` in it; any path
    TensorFlow's file systems read). Raises :class:`drn_tf.models.resolve.ModelError` without that signature."""

    name = "saved_model"

    def __init__(self, path):
        from drn_tf.export.common import SERVING_INPUT, SERVING_OUTPUT, _tf
        from drn_tf.models.resolve import ModelError

        self._tf, self._input, self._output = _tf(), SERVING_INPUT, SERVING_OUTPUT
        self.path = str(path)
        self._loaded = self._tf.saved_model.load(self.path)
        try:
            self._fn = self._loaded.signatures["serving_default"]
        except KeyError:
            raise ModelError(f"{self.path}: SavedModel has no 'serving_default' signature") from None
        self.receptive_radius = sum(
            (int(v.shape[0]) - 1) // 2 for v in self._loaded.variables if len(v.shape) == 4 and int(v.shape[0]) > 1
        )
        self.scale = self.run_batch(np.zeros((1, 8, 8, 3), np.uint8)).shape[1] // 8

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        y = self._fn(**{self._input: self._tf.constant(uint8_pixels(batch))})[self._output]
        return np.asarray(y, dtype=np.float32) / 255.0


__all__ = ["SavedModelRuntime"]
