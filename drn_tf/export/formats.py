"""The forms a model is exported in, one table: :data:`FORMATS` (name -> how to write it).

``drn export report`` measures every entry (size, quality, latency) and
``drn benchmark`` times the exported ones beside the Keras model; both write
them through this table, so a form measured is the form ``drn export`` ships.
Each writer puts its file (or folder) into a given folder and returns its path:

* ``keras``: the ``.keras`` file (the reference);
* ``saved_model``: :func:`drn_tf.export.savedmodel.export_saved_model` (TF Serving layout, version 1);
* ``tflite-*``: :func:`drn_tf.export.tflite.convert_tflite` with that quantisation
  (``calibration``, ``calibration_count``, ``workdir`` and, for int8, ``int8_ranges`` are passed on: given
  ranges, the int8 file is made from them and no calibration images are read);
* ``onnx``: :func:`drn_tf.export.onnx.convert_onnx` (``.onnx``, dynamic size);
* ``openvino``: :func:`drn_tf.export.onnx.convert_openvino` (``openvino/drn.xml`` + ``.bin``, float32 weights).

Nothing is imported at load time: the writers import what they use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class ExportFormat:
    """A row of :data:`FORMATS`: ``write(model, folder, **options)`` -> the file or folder written."""

    description: str
    write: Callable


def _keras_file(model, folder, **options) -> Path:
    path = Path(folder) / "model.keras"
    model.save(path)
    return path


def _saved_model(model, folder, **options) -> Path:
    from drn_tf.export.savedmodel import export_saved_model

    return export_saved_model(model, Path(folder) / "saved_model", version=1, overwrite=True)


def _tflite(quantize: str, gpu_friendly: bool = False) -> Callable:
    name = f"drn_tflite-{quantize}{'-gpu' if gpu_friendly else ''}.tflite"

    def write(model, folder, calibration=None, calibration_count=None, workdir=None, int8_ranges=None) -> Path:
        from drn_tf.core.utils import write_atomic
        from drn_tf.export.int8 import CALIBRATION_COUNT
        from drn_tf.export.tflite import convert_tflite

        flat = convert_tflite(model, quantize, gpu_friendly=gpu_friendly, calibration=calibration,
                              calibration_count=calibration_count or CALIBRATION_COUNT, workdir=workdir,
                              int8_ranges=int8_ranges)
        return write_atomic(Path(folder) / name, flat)

    return write


def _onnx(model, folder, **options) -> Path:
    from drn_tf.core.utils import write_atomic
    from drn_tf.export.onnx import convert_onnx

    return write_atomic(Path(folder) / "drn.onnx", convert_onnx(model))


def _openvino(model, folder, **options) -> Path:
    from drn_tf.export.onnx import convert_openvino

    return convert_openvino(model, Path(folder) / "openvino")


FORMATS: dict[str, ExportFormat] = {
    "keras": ExportFormat("Keras model (float32), the reference", _keras_file),
    "saved_model": ExportFormat("SavedModel for TF Serving, `serving_default` (uint8 in/out)", _saved_model),
    "tflite-float32": ExportFormat("TFLite float32", _tflite("float32")),
    "tflite-float16": ExportFormat("TFLite float16 weights", _tflite("float16")),
    "tflite-dynamic": ExportFormat("TFLite dynamic-range int8 weights", _tflite("dynamic")),
    "tflite-int8": ExportFormat("TFLite full int8 (uint8 I/O)", _tflite("int8")),
    "tflite-float32-gpu": ExportFormat("TFLite float32, pixel shuffle as TRANSPOSE_CONV (--gpu-friendly)",
                                       _tflite("float32", gpu_friendly=True)),
    "onnx": ExportFormat("ONNX (float32 in/out, dynamic size) in ONNX Runtime", _onnx),
    "openvino": ExportFormat("OpenVINO IR (fp32 weights) on the CPU plugin, float32", _openvino),
}

__all__ = ["FORMATS", "ExportFormat"]
