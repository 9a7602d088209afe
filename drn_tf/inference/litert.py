"""The LiteRT runtime: a DRN TFLite file in the LiteRT interpreter (XNNPACK).

One class for every TFLite file :func:`drn_tf.export.tflite.convert_tflite`
writes: float32 / float16 / dynamic-range models (float32 in [0, 1] in and
out) and full-int8 ones (uint8 pixels in and out). Dynamic-size files are
resized to each input (``resize_tensor_input`` + ``allocate_tensors``);
fixed-size files (``--input-size``) declare ``input_size`` and the tiling
assembly (:mod:`drn_tf.inference.tiled`) cuts images into tiles of exactly
that size that overlap by the receptive radius, so every kept output pixel
sees all the input it depends on and the result equals a whole-image run;
images smaller than the tile are edge-padded. This is the procedure an
Android app follows.

Opening a file imports neither TensorFlow nor Keras: the LiteRT interpreter
(``ai-edge-litert``) runs it and its ``drn_tf`` metadata is read with the
``flatbuffers`` package (:func:`drn_tf.export.tflite_metadata.drn_metadata`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from drn_tf.core.tiling import FALLBACK_OVERLAP
from drn_tf.core.utils import quiet_stderr
from drn_tf.export.tflite_metadata import drn_metadata
from drn_tf.inference.runtime import Runtime, float_pixels, uint8_pixels
from drn_tf.inference.tiled import super_resolve


class LiteRTRuntime(Runtime):
    """A TFLite DRN model (a path or the file's bytes) in the LiteRT interpreter.

    ``run_batch`` gives an int8 model its input as 8-bit pixels (float input
    rounded: exact for 8-bit images) and returns its pixels / 255; a float
    model gets float32 in [0, 1]. ``run`` is one raw invocation in the model's
    own dtypes. ``overlap``: the tile overlap of a fixed-size file (default:
    the receptive radius from the file's metadata, else
    :data:`drn_tf.core.tiling.FALLBACK_OVERLAP`).
    """

    def __init__(self, model, num_threads: int | None = None, overlap: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(model) if isinstance(model, (str, os.PathLike)) else None
        data = self.path.read_bytes() if self.path is not None else bytes(model)
        self.metadata = drn_metadata(data)  # read without TensorFlow
        with quiet_stderr():
            self.interpreter = Interpreter(model_content=data, num_threads=num_threads or os.cpu_count())
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        signature = [int(v) for v in self.input["shape_signature"]]
        self.input_size = None if any(v < 0 for v in signature[1:3]) else (signature[1], signature[2])
        self.uint8_io = self.input["dtype"] == np.uint8
        self.name = "litert-int8" if self.uint8_io else "litert"
        radius = self.metadata.get("receptive_radius")
        self.receptive_radius = None if radius is None else int(radius)
        self.overlap = int(overlap if overlap is not None else FALLBACK_OVERLAP if radius is None else radius)
        with quiet_stderr():  # LiteRT says "Created TensorFlow Lite XNNPACK delegate" here
            self.interpreter.allocate_tensors()
        self._shape = None
        self.scale = int(self.metadata.get("scale") or 0) or self._probe_scale()

    def _probe_scale(self) -> int:
        """The scale of a file without drn_tf metadata: one run on zeros."""
        h, w = self.input_size or (8, 8)
        return self.run_batch(np.zeros((1, h, w, 3), np.uint8)).shape[1] // h

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One invocation on ``(1, h, w, 3)`` in the model's own input dtype; raw output."""
        if self._shape != batch.shape:
            if self.input_size is None:
                self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
                self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def _to_float(self, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.uint8:
            scale, zero = self.output["quantization"]
            return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return y.astype(np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        x = uint8_pixels(batch) if self.uint8_io else float_pixels(batch)
        return np.stack([self._to_float(self.run(np.ascontiguousarray(image[None])))[0] for image in x])

    def predict(self, lr: np.ndarray) -> np.ndarray:
        """uint8 ``(h, w, 3)`` -> float32 ``(h*s, w*s, 3)`` in [0, 1]; a fixed-size file tiles it."""
        lr = np.asarray(lr)
        if lr.ndim != 3:
            raise ValueError(f"expected an (h, w, c) image, got shape {lr.shape}")
        return super_resolve(self, lr, overlap=self.overlap)


# the earlier name of the class, kept for scripts
TFLiteUpscaler = LiteRTRuntime

__all__ = ["LiteRTRuntime", "TFLiteUpscaler"]
