"""The ONNX Runtime runtime: a DRN ONNX file (``drn export onnx``) in ONNX Runtime's CPU execution provider.

The file's ``drn_tf`` metadata entry (scale, receptive radius) is read from the
session itself, so opening an exported file imports neither TensorFlow nor the
``onnx`` package. Dynamic-size files take any image (and batch); a fixed-size
file (``--input-size``) declares ``input_size`` and the tiling assembly
(:mod:`drn_tf.inference.tiled`) cuts tiles of that size, as for LiteRT.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from drn_tf.export.common import METADATA_NAME
from drn_tf.export.onnx import require
from drn_tf.inference.runtime import Runtime, float_pixels


def fixed_size(shape) -> tuple[int, int] | None:
    """``(h, w)`` of an NHWC input shape whose height and width are numbers; None when either is dynamic."""
    h, w = shape[1], shape[2]
    return (int(h), int(w)) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None


def probe_scale(runtime: Runtime) -> int:
    """The scale of a file without drn_tf metadata: one run on zeros."""
    h, w = runtime.input_size or (8, 8)
    return runtime.run_batch(np.zeros((1, h, w, 3), np.uint8)).shape[1] // h


class OnnxRuntime(Runtime):
    """An ONNX DRN model (a path or the file's bytes) in an ``onnxruntime.InferenceSession`` (CPU).

    ``num_threads``: intra-op threads (default: the CPUs). ``run_batch`` feeds float32 in [0, 1] and returns
    the model's output (clipped to [0, 1] inside the exported graph)."""

    name = "onnxruntime"

    def __init__(self, model, num_threads: int | None = None):
        ort = require("onnxruntime", "onnx")
        self.path = Path(model) if isinstance(model, (str, os.PathLike)) else None
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads or os.cpu_count() or 1)
        options.log_severity_level = 3
        source = str(self.path) if self.path is not None else bytes(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_NAME)
        self.metadata = json.loads(meta) if meta else {}
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0].name
        self.input_size = fixed_size(self.input.shape)
        radius = self.metadata.get("receptive_radius")
        self.receptive_radius = None if radius is None else int(radius)
        self.scale = int(self.metadata.get("scale") or 0) or probe_scale(self)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        x = float_pixels(batch)
        if self.input_size is not None and len(x) > 1:  # a fixed-size file takes one image at a time
            return np.concatenate([self.run_batch(x[i : i + 1]) for i in range(len(x))])
        return np.asarray(self.session.run([self.output], {self.input.name: x})[0], dtype=np.float32)


__all__ = ["OnnxRuntime", "fixed_size", "probe_scale"]
