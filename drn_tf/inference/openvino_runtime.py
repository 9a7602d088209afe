"""The OpenVINO runtime: a DRN OpenVINO IR (``drn export openvino``: ``.xml`` + ``.bin``) on OpenVINO's CPU plugin.

The IR holds float32 weights; the precision the CPU computes in is chosen here,
when the model is compiled (``INFERENCE_PRECISION_HINT``): ``f32`` (the same
output as Keras within float rounding) or ``bf16`` (AVX512_BF16 / AMX: faster,
a slightly different output). The scale and receptive radius come from the
IR's ``drn_tf`` ``rt_info`` entry; dynamic-size IRs take any image size, a
fixed-size one declares ``input_size`` and is tiled like the other runtimes
(:mod:`drn_tf.inference.tiled`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from drn_tf.core.utils import cpu_has_bf16
from drn_tf.export.common import ExportError
from drn_tf.export.onnx import openvino_metadata, require
from drn_tf.inference.onnx_runtime import fixed_size, probe_scale
from drn_tf.inference.runtime import Runtime, float_pixels

PRECISIONS = {"f32": "openvino", "bf16": "openvino-bf16"}  # INFERENCE_PRECISION_HINT -> runtime name


def check_bf16(flags=None) -> None:
    """:class:`ExportError` unless this CPU computes bf16 natively (AVX512_BF16 or AMX-BF16)."""
    if not cpu_has_bf16(flags):
        raise ExportError("openvino-bf16 needs a CPU with AVX512_BF16 or AMX-BF16, which this one lacks; "
                          "use --runtime openvino (float32)")


class OpenVINORuntime(Runtime):
    """An OpenVINO IR (the ``.xml`` path; its ``.bin`` beside it) compiled for the CPU at ``precision``
    (``f32`` or ``bf16``) with ``num_threads`` inference threads (default: the CPUs) and the latency hint."""

    def __init__(self, path, precision: str = "f32", num_threads: int | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
        if precision == "bf16":
            check_bf16()
        ov = require("openvino", "openvino")
        self.path = Path(path)
        self.name = PRECISIONS[precision]
        self.precision = precision
        core = ov.Core()
        model = core.read_model(str(self.path))
        self.metadata = openvino_metadata(model)
        shape = model.inputs[0].get_partial_shape()
        self.input_size = fixed_size([d.get_length() if d.is_static else -1 for d in shape])
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(num_threads or os.cpu_count() or 1)}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        radius = self.metadata.get("receptive_radius")
        self.receptive_radius = None if radius is None else int(radius)
        self.scale = int(self.metadata.get("scale") or 0) or probe_scale(self)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        x = float_pixels(batch)
        if self.input_size is not None and len(x) > 1:  # a fixed-size IR takes one image at a time
            return np.concatenate([self.run_batch(x[i : i + 1]) for i in range(len(x))])
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)


__all__ = ["OpenVINORuntime", "PRECISIONS", "check_bf16"]
