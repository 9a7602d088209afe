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

An int8 file with saturation maps (the ``litert-int8`` runtime's, see
:mod:`drn_tf.inference.saturation`) and a ``fallback`` (the float model, opened
on first need) runs the blocks where an activation clipped in float; without
a fallback such blocks are only reported (one warning per runtime).

Opening a file imports neither TensorFlow nor Keras: the LiteRT interpreter
(``ai-edge-litert``) runs it and its ``drn_tf`` metadata is read with the
``flatbuffers`` package (:func:`drn_tf.export.tflite_metadata.drn_metadata`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

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
    :data:`drn_tf.core.tiling.FALLBACK_OVERLAP`). ``fallback``: a function giving the float
    :class:`~drn_tf.inference.runtime.Runtime` that reruns the clipped blocks of an int8 file with saturation
    maps; ``guard=False`` leaves them as int8 computed them. ``float_pixels`` / ``pixels`` count the LR
    pixels run in float and in all since the runtime was opened.
    """

    def __init__(self, model, num_threads: int | None = None, overlap: int | None = None,
                 fallback: Callable | None = None, guard: bool = True):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(model) if isinstance(model, (str, os.PathLike)) else None
        data = self.path.read_bytes() if self.path is not None else bytes(model)
        self.metadata = drn_metadata(data)  # read without TensorFlow
        with quiet_stderr():
            self.interpreter = Interpreter(model_content=data, num_threads=num_threads or os.cpu_count())
        self.input = self.interpreter.get_input_details()[0]
        outputs = self.interpreter.get_output_details()
        self.output = outputs[0]
        saturation = self.metadata.get("saturation") or {}
        self.maps = outputs[1:] if guard and saturation and len(outputs) > 1 else []
        self.block = int(saturation.get("block") or 0)
        self._fallback, self._float = fallback, None
        self.float_pixels = self.pixels = 0
        self._warned = False
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
        self._invoke(batch)
        return self.interpreter.get_tensor(self.output["index"])

    def _invoke(self, batch: np.ndarray) -> None:
        if self._shape != batch.shape:
            if self.input_size is None:
                self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
                self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()

    def _to_float(self, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.uint8:
            scale, zero = self.output["quantization"]
            return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return y.astype(np.float32)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        x = uint8_pixels(batch) if self.uint8_io else float_pixels(batch)
        return np.stack([self._run_one(np.ascontiguousarray(image)) for image in x])

    def _run_one(self, image: np.ndarray) -> np.ndarray:
        """One ``(h, w, 3)`` image; an int8 file with maps gets its clipped blocks rerun in float."""
        y = self._to_float(self.run(image[None]))[0]
        self.pixels += image.shape[0] * image.shape[1]
        if not self.maps:
            return y
        from drn_tf.inference import saturation as S

        scores = S.block_scores(self.interpreter.get_tensor(m["index"]) for m in self.maps)
        regions = S.float_plan(scores, self.block, image.shape)
        if not regions:
            return y
        if self._fallback is None:
            if not self._warned:
                self._warned = True
                share = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in regions) / (image.shape[0] * image.shape[1])
                warnings.warn(f"int8 clipped activations on {share:.0%} of an image; those regions may be "
                              "less accurate than the float model's (open the file with a fallback, or use a "
                              "float runtime)", stacklevel=3)
            return y
        if self._float is None:
            self._float = self._fallback()
        y = np.array(y, dtype=np.float32, copy=True)
        run = lambda crop: self._float.run_batch(crop[None])[0]  # noqa: E731
        self.float_pixels += S.patch_float(y, image, regions, run, self.scale, self.receptive_radius or self.overlap)
        return y

    def predict(self, lr: np.ndarray) -> np.ndarray:
        """uint8 ``(h, w, 3)`` -> float32 ``(h*s, w*s, 3)`` in [0, 1]; a fixed-size file tiles it."""
        lr = np.asarray(lr)
        if lr.ndim != 3:
            raise ValueError(f"expected an (h, w, c) image, got shape {lr.shape}")
        return super_resolve(self, lr, overlap=self.overlap)


# the earlier name of the class, kept for scripts
TFLiteUpscaler = LiteRTRuntime

__all__ = ["LiteRTRuntime", "TFLiteUpscaler"]
