"""ONNX and OpenVINO exports: the float32 graph of the TFLite export, for ONNX Runtime and OpenVINO.

* :func:`convert_onnx`: ``tf2onnx.convert.from_function`` (what Keras 3's
  ``model.export(format="onnx")`` runs on TensorFlow) on the float graph
  ``lr_image`` float32 ``[batch, H, W, 3]`` in [0, 1] -> ``sr_image`` float32
  ``[batch, H*s, W*s, 3]`` clipped to [0, 1]; height, width and batch are
  dynamic unless ``input_size`` fixes them to ``[1, H, W, 3]``. The file's
  ``metadata_props`` hold the ``drn_tf`` entry (JSON: scale, receptive radius,
  input size, I/O convention), read by :func:`onnx_metadata` without TensorFlow.
* :func:`convert_openvino`: OpenVINO IR (``.xml`` + ``.bin``) by
  ``openvino.convert_model`` from that ONNX file, weights kept in float32
  (``compress_to_fp16=False``): bf16 is chosen when the model is compiled
  (the ``INFERENCE_PRECISION_HINT``), not in the file. The same ``drn_tf``
  entry goes into the IR's ``rt_info``.

A missing package is an :class:`ExportError` that says what to install
(:data:`INSTALL`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from drn_tf.core.utils import parse_size, quiet_stderr
from drn_tf.export.common import METADATA_NAME, TFLITE_INPUT, TFLITE_OUTPUT, ExportError, _tf, model_radius, model_scale

INSTALL = {
    "onnx": 'pip install "drn-tf[onnx]"  (onnxruntime, tf2onnx, onnx)',
    "openvino": 'pip install "drn-tf[openvino]"  (openvino, onnx, tf2onnx)',
}
ONNX_OPSET = 17


class MissingPackage(ExportError):
    """A package an export or runtime needs is not installed; the message says what to install."""


def require(module: str, extra: str):
    """``import module``, or :class:`MissingPackage` naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{module} is not installed: {INSTALL[extra]}") from None


def export_metadata(model, input_size, fmt: str) -> dict:
    """The ``drn_tf`` entry of an ONNX / OpenVINO file."""
    return {
        "format": fmt,
        "scale": model_scale(model),
        "receptive_radius": model_radius(model),
        "input_size": list(input_size) if input_size else None,
        "input": TFLITE_INPUT,
        "output": TFLITE_OUTPUT,
        "io": "float32 RGB in [0, 1], NHWC; output clipped to [0, 1]",
    }


def convert_onnx(model, input_size=None, opset: int = ONNX_OPSET) -> bytes:
    """The ONNX file (bytes) of ``model``: see the module docstring. ``input_size``: ``(H, W)`` or ``"HxW"``."""
    onnx = require("onnx", "onnx")
    tf2onnx = require("tf2onnx", "onnx")
    input_size = parse_size(input_size, error=ExportError)
    metadata = export_metadata(model, input_size, "drn_tf.onnx/1")
    tf = _tf()
    channels = int(model.inputs[0].shape[-1])
    shape = [None, None, None, channels] if input_size is None else [1, input_size[0], input_size[1], channels]
    spec = (tf.TensorSpec(shape, tf.float32, name=TFLITE_INPUT),)

    @tf.function(input_signature=spec)
    def forward(lr_image):
        return tf.identity(tf.clip_by_value(model(lr_image, training=False), 0.0, 1.0), name=TFLITE_OUTPUT)

    _patch_tf2onnx()
    try:
        with quiet_stderr():
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=opset)
    except Exception as exc:  # noqa: BLE001 - tf2onnx raises many kinds; one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"ONNX conversion failed: {first}") from None
    graph = proto.graph
    if len(graph.output) != 1:
        raise ExportError(f"ONNX conversion gave {len(graph.output)} outputs, expected 1")
    old = graph.output[0].name
    if old != TFLITE_OUTPUT:  # the output's name as the other exports call it
        for node in graph.node:
            node.output[:] = [TFLITE_OUTPUT if n == old else n for n in node.output]
            node.input[:] = [TFLITE_OUTPUT if n == old else n for n in node.input]
        graph.output[0].name = TFLITE_OUTPUT
    _name_dims(graph)
    set_onnx_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _patch_tf2onnx() -> None:
    """tf2onnx 1.17 with numpy 2: the patch Keras applies before its own ONNX export."""
    import warnings

    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()


def _name_dims(graph) -> None:
    """Dynamic dimensions named as users read them: batch, height, width (input), sr_height, sr_width (output)."""
    for value, names in ((graph.input[0], ("batch", "height", "width")),
                         (graph.output[0], ("batch", "sr_height", "sr_width"))):
        for dim, name in zip(value.type.tensor_type.shape.dim, names):
            if not dim.HasField("dim_value"):
                dim.dim_param = name


def set_onnx_metadata(proto, metadata: dict) -> None:
    entries = [p for p in proto.metadata_props if p.key != METADATA_NAME]
    del proto.metadata_props[:]
    proto.metadata_props.extend(entries)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, json.dumps(metadata, sort_keys=True)
    proto.producer_name = "drn_tf"


def onnx_metadata(path_or_bytes) -> dict:
    """The ``drn_tf`` entry of an ONNX file (empty dict if none); needs ``onnx`` only, not TensorFlow."""
    onnx = require("onnx", "onnx")
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)
    proto = onnx.load_model_from_string(data)
    for prop in proto.metadata_props:
        if prop.key == METADATA_NAME:
            return json.loads(prop.value)
    return {}


def convert_openvino(model, folder, name: str = "drn", input_size=None, onnx_bytes: bytes | None = None) -> Path:
    """Write ``folder/name.xml`` + ``.bin`` (OpenVINO IR, float32 weights) and return the ``.xml`` path.

    Converted from the ONNX export (``onnx_bytes`` when already made)."""
    ov = require("openvino", "openvino")
    input_size = parse_size(input_size, error=ExportError)
    data = onnx_bytes if onnx_bytes is not None else convert_onnx(model, input_size)
    metadata = export_metadata(model, input_size, "drn_tf.openvino/1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drn-openvino-", dir=folder) as tmp:
        src = Path(tmp) / "model.onnx"
        src.write_bytes(data)
        try:
            with quiet_stderr():
                ov_model = ov.convert_model(str(src))
        except Exception as exc:  # noqa: BLE001 - one line for the user
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"OpenVINO conversion failed: {first}") from None
        ov_model.set_rt_info(json.dumps(metadata, sort_keys=True), [METADATA_NAME])
        staged = Path(tmp) / f"{name}.xml"
        ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        target = folder / f"{name}.xml"
        staged.with_suffix(".bin").replace(target.with_suffix(".bin"))  # .bin first: an .xml is never without it
        staged.replace(target)
    return target


def openvino_metadata(core_model) -> dict:
    """The ``drn_tf`` entry of a read OpenVINO model (``Core.read_model``); empty dict if none."""
    try:
        if core_model.has_rt_info([METADATA_NAME]):
            return json.loads(core_model.get_rt_info([METADATA_NAME]).astype(str))
    except Exception:  # noqa: BLE001 - a file without the entry, or an unreadable one
        pass
    return {}


__all__ = ["INSTALL", "MissingPackage", "convert_onnx", "convert_openvino", "onnx_metadata", "openvino_metadata",
           "require"]
