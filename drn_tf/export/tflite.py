"""Export a DRN model for serving: SavedModel (TF Serving) and TFLite (Android).

TensorFlow-only module (``tf.saved_model``, ``tf.lite``); the model code
itself stays backend-agnostic. Everything here works on a model in memory;
``drn export`` (:mod:`drn_tf.cli.commands.export`) and ``converters/*.py`` are
thin wrappers.

SavedModel (:func:`export_saved_model`), written as ``DIR/<version>/`` (the
layout TF Serving watches), with two signatures:

* ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` (any
  size) -> ``sr_images`` uint8 ``[batch, height*s, width*s, 3]``;
* ``upscale_bytes``: ``image_bytes`` string ``[batch]`` (PNG/JPEG/BMP/GIF
  files; grey and RGBA inputs become RGB) -> ``sr_image_bytes`` string
  ``[batch]`` (PNG files). The ``_bytes`` suffix makes TF Serving's REST API
  answer with ``{"b64": ...}`` objects.

TFLite (:func:`convert_tflite`): always converted from a SavedModel written
with :class:`keras.export.ExportArchive` (``TFLiteConverter.from_keras_model``
does not work with Keras 3), ``TFLITE_BUILTINS`` only (the export fails with
:class:`ExportError` if an op would need the Flex delegate), one signature
``serving_default``: ``lr_image`` ``[1, H, W, 3]`` -> ``sr_image``
``[1, H*s, W*s, 3]``, both dynamic in size unless ``input_size`` fixes them.

* ``float32``, ``float16`` (weights stored as float16), ``dynamic`` (int8
  weights, float activations): float32 input and output in ``[0, 1]``; the
  output is clipped to ``[0, 1]`` inside the model.
* ``int8``: full-integer (calibrated on real images), uint8 input and output
  that *are* 8-bit pixel values (scale 1/255, zero point 0: the model's
  uint8 tensors are set to exactly that, see :func:`_force_pixel_io`).

Every TFLite file carries a ``drn_tf`` metadata entry (JSON: scale,
receptive radius, quantization, input size, I/O convention) read by
:func:`tflite_metadata`, and the standard ``TFLITE_METADATA`` entry (name,
description, version, author, license, the image tensors' normalisation and
range) that Android tooling reads (:mod:`drn_tf.export.tflite_metadata`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from drn_tf.core.utils import parse_size, quiet_stderr
from drn_tf.export.common import (
    METADATA_NAME,
    QUANTIZATIONS,
    TFLITE_INPUT,
    TFLITE_OUTPUT,
    ExportError,
    _tf,
    model_radius,
    model_scale,
)
from drn_tf.export.int8 import (
    CALIBRATION_COUNT,
    CALIBRATION_PATCH,
    INT8_RECIPE,
    SATURATION_BLOCK,
    SATURATION_FORMAT,
    _int8_saved_model,
    calibration_images,
    range_samples,
    saturation_output,
)
from drn_tf.export.savedmodel import _float_saved_model, gpu_friendly_model
from drn_tf.export.tflite_metadata import describe, metadata_flatbuffer


def _opcode_names(tflite_bytes: bytes) -> list[str]:
    """Names of the operators a TFLite flatbuffer uses (``CUSTOM:<name>`` for custom ones)."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    ops = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
        ops.append(name)
    return ops


def tflite_ops(tflite_bytes: bytes) -> dict[str, int]:
    """Operator name -> number of uses in the main subgraph."""
    from tensorflow.lite.python import schema_py_generated as schema

    opcodes = _opcode_names(tflite_bytes)
    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    counts: dict[str, int] = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            name = opcodes[graph.Operators(i).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def check_builtin_only(tflite_bytes: bytes) -> None:
    """Raise :class:`ExportError` if any op is a Flex (TF) or other custom op."""
    bad = sorted({name for name in _opcode_names(tflite_bytes) if name.startswith("CUSTOM") or "Flex" in name})
    if bad:
        raise ExportError(
            f"the TFLite model needs ops outside the TFLite builtins ({', '.join(bad)}): it would need the "
            "TensorFlow (Flex) delegate, which Android apps do not ship by default"
        )


# Ops TensorFlow's GPU checker accepts but the LiteRT GPU delegate's documented op list lacks
# (older delegates reject them: "DEPTH_TO_SPACE: Operation is not supported"; tensorflow#39746, #51421).
GPU_UNLISTED_OPS = {"DEPTH_TO_SPACE": "use --gpu-friendly (pixel shuffle as TRANSPOSE_CONV)"}


def gpu_compatibility(tflite_bytes: bytes) -> tuple[bool, str]:
    """``(compatible, details)``: TensorFlow's GPU-delegate checker (``Analyzer``) and the documented op list.

    That checker (``tflite/tools/versioning/gpu_compatibility.cc``) accepts
    ``DEPTH_TO_SPACE``, which the delegate's documented op list lacks (and
    delegates in the field reject), so a model using an op of
    :data:`GPU_UNLISTED_OPS` is reported not compatible whatever it says.
    It cannot see run-time limits either: treat "compatible" as necessary,
    not sufficient.
    """
    tf = _tf()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=tflite_bytes, gpu_compatibility=True)
    text = buffer.getvalue()
    ok = "looks compatible with GPU delegate" in text
    details = [line.strip() for line in text.splitlines() if "GPU COMPATIBILITY" in line or "Not supported" in line]
    for op in sorted(set(_opcode_names(tflite_bytes)) & set(GPU_UNLISTED_OPS)):
        ok = False
        details.append(f"{op} is not on the LiteRT GPU delegate's documented op list ({GPU_UNLISTED_OPS[op]})")
    return ok, "; ".join(details)


def _set_metadata(model_obj, name: str, data: bytes) -> None:
    """A metadata entry ``name`` -> a new buffer holding ``data`` (an earlier entry of that name replaced)."""
    from tensorflow.lite.python import schema_py_generated as schema

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model_obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model_obj.buffers) - 1
    model_obj.metadata = [m for m in (model_obj.metadata or []) if m.name not in (name, name.encode())]
    model_obj.metadata.append(entry)


def _force_pixel_io(model_obj) -> None:
    """Give the uint8 input and (image) output tensors scale 1/255 and zero point 0.

    The converter makes the uint8 I/O tensors inherit the calibrated ranges
    (the output's, for instance, is whatever the model reached on the
    calibration crops). The edge ops are ``QUANTIZE`` (uint8 <-> int8), which
    requantize between any two scales, so setting the uint8 side to 1/255
    makes the I/O plain 8-bit pixels without touching the int8 graph:
    output values outside [0, 1] saturate at 0 and 255, as clipping would.
    The image is the first output (:func:`_image_output_first`); saturation
    maps after it keep their taps' quantization.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model_obj.subgraphs[0]
    for index in list(graph.inputs) + list(graph.outputs[:1]):
        tensor = graph.tensors[index]
        if tensor.type != schema.TensorType.UINT8:
            continue
        q = tensor.quantization or schema.QuantizationParametersT()
        q.scale = [1.0 / 255.0]
        q.zeroPoint = [0]
        q.min, q.max = None, None
        tensor.quantization = q
    producers = {}
    for op in graph.operators:
        for out in op.outputs:
            producers[out] = op
    opcodes = model_obj.operatorCodes
    for index in graph.outputs[:1]:
        op = producers.get(index)
        if op is None:
            continue
        code = opcodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.QUANTIZE:
            raise ExportError("int8 model: the output is not produced by a QUANTIZE op; cannot fix its scale")
    for index in graph.inputs:
        consumers = [op for op in graph.operators if index in list(op.inputs)]
        for op in consumers:
            code = opcodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.QUANTIZE:
                raise ExportError("int8 model: the input is not consumed by a QUANTIZE op; cannot fix its scale")


def _int8_elu(model_obj) -> int:
    """Run ELU in int8: every ``DEQUANTIZE -> ELU -> QUANTIZE`` chain becomes one int8 ``ELU``.

    The converter leaves ELU in float inside a full-integer model (it has no
    int8 quantization spec for it), though the builtin ELU kernel takes int8
    (a 256-entry lookup table from the input's to the output's quantization,
    built at prepare time). The table holds the float ELU of every input
    level, quantized as the QUANTIZE op would: the outputs are identical
    (tested), with two ops and a float tensor fewer per ELU (measured 15%
    faster for drn_x2 int8, see README). Returns the number of ELUs changed.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model_obj.subgraphs[0]
    codes = model_obj.operatorCodes
    op_kind = lambda op: max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode)  # noqa: E731
    producer = {int(t): op for op in graph.operators for t in op.outputs}
    consumers: dict = {}
    for op in graph.operators:
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(op)
    graph_io = {int(t) for t in list(graph.inputs) + list(graph.outputs)}
    drop = []
    for op in graph.operators:
        if op_kind(op) != schema.BuiltinOperator.ELU:
            continue
        deq = producer.get(int(op.inputs[0]))
        after = consumers.get(int(op.outputs[0]), [])
        if (deq is None or op_kind(deq) != schema.BuiltinOperator.DEQUANTIZE or len(after) != 1
                or op_kind(after[0]) != schema.BuiltinOperator.QUANTIZE
                or graph.tensors[int(deq.inputs[0])].type != schema.TensorType.INT8
                or graph.tensors[int(after[0].outputs[0])].type != schema.TensorType.INT8
                or len(consumers.get(int(deq.outputs[0]), [])) != 1
                or {int(deq.outputs[0]), int(op.outputs[0])} & graph_io):
            continue
        op.inputs, op.outputs = deq.inputs, after[0].outputs
        drop += [deq, after[0]]
    graph.operators = [op for op in graph.operators if not any(op is d for d in drop)]
    return len(drop) // 2


def _image_output_first(model_obj) -> None:
    """Order the graph's outputs by their signature names: the image (:data:`TFLITE_OUTPUT`) first, then the
    saturation maps in tap order (the converter orders them its own way)."""
    graph = model_obj.subgraphs[0]
    if len(graph.outputs) < 2 or not model_obj.signatureDefs:
        return
    names = {int(m.tensorIndex): (m.name.decode() if isinstance(m.name, bytes) else m.name)
             for m in model_obj.signatureDefs[0].outputs}
    # saturation_NN in numeric order (length first: saturation_100 after saturation_99)
    order = lambda index: (names.get(int(index)) != TFLITE_OUTPUT, len(names.get(int(index)) or ""),  # noqa: E731
                           names.get(int(index)) or "")
    graph.outputs = sorted(graph.outputs, key=order)


def _postprocess(tflite_bytes: bytes, metadata: dict, pixel_io: bool, standard: bytes | None = None) -> bytes:
    """Put the image output first, fix the int8 model's pixel I/O and ELUs; add the ``drn_tf`` JSON entry and
    the standard ``TFLITE_METADATA`` flatbuffer (``standard``, :mod:`drn_tf.export.tflite_metadata`)."""
    from tensorflow.lite.tools import flatbuffer_utils

    from drn_tf.export.tflite_metadata import METADATA_ENTRY

    model_obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    _image_output_first(model_obj)
    if pixel_io:
        _force_pixel_io(model_obj)
        metadata = dict(metadata, int8_elu=_int8_elu(model_obj))
    _set_metadata(model_obj, METADATA_NAME, json.dumps(metadata, sort_keys=True).encode())
    if standard is not None:
        _set_metadata(model_obj, METADATA_ENTRY, standard)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_obj))


def tflite_metadata(tflite) -> dict:
    """The ``drn_tf`` metadata of a TFLite file or bytes (empty dict if none); read without TensorFlow
    (:func:`drn_tf.export.tflite_metadata.drn_metadata`)."""
    from drn_tf.export.tflite_metadata import drn_metadata

    return drn_metadata(tflite)


def convert_tflite(
    model,
    quantize: str = "float32",
    *,
    input_size=None,
    gpu_friendly: bool = False,
    calibration=None,
    calibration_count: int = CALIBRATION_COUNT,
    workdir=None,
    int8_ranges=None,
    saturation_maps: bool = False,
) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer (see the module docstring for the variants).

    ``input_size``: ``(H, W)`` or ``"HxW"`` for a fixed-shape ``[1, H, W, 3]``
    model (what Android apps usually ship; larger images are tiled, see
    :class:`drn_tf.inference.litert.LiteRTRuntime`); default: dynamic height, width and batch.
    ``calibration`` (int8 only): a folder or list of image files, or a list
    of float32 ``(h, w, 3)`` arrays in [0, 1]; default a few crops of
    ``<data>/train``. ``gpu_friendly``: pixel shuffle as ``TRANSPOSE_CONV``
    (:func:`gpu_friendly_model`). ``int8_ranges``: the calibrated tap ranges
    (:func:`drn_tf.export.int8.int8_ranges`, e.g. a bundled model's), so no calibration images are
    needed (the same model as one calibrated on the images those ranges came from).
    ``saturation_maps`` (int8 of a DRN): after the image, one output per convolution output
    (:func:`~drn_tf.export.int8.saturation_taps`) marking the
    :data:`~drn_tf.export.int8.SATURATION_BLOCK`-pixel blocks where it clipped (what the ``litert-int8``
    runtime reads to run those regions in float, :mod:`drn_tf.inference.saturation`); listed in both
    metadata entries.
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    input_size = parse_size(input_size, error=ExportError)
    scale = model_scale(model)
    radius = model_radius(model)
    source = gpu_friendly_model(model) if gpu_friendly else model
    samples = None
    if quantize == "int8":
        if isinstance(calibration, (list, tuple)) and calibration and isinstance(calibration[0], np.ndarray):
            samples = [np.asarray(s, np.float32) for s in calibration]
            if input_size is not None and any(s.shape[:2] != input_size for s in samples):
                raise ExportError(f"calibration arrays must be {input_size[0]}x{input_size[1]} for this fixed-size model")
        elif int8_ranges is not None and calibration is None:
            samples = range_samples(input_size)
        else:
            samples = calibration_images(
                calibration, scale=scale, count=calibration_count, patch=input_size or CALIBRATION_PATCH
            )
    recipe, mapped = None, None
    with tempfile.TemporaryDirectory(prefix="drn-tflite-", dir=workdir) as tmp:
        saved = Path(tmp) / "saved_model"
        if quantize == "int8":
            mapped = _int8_saved_model(model, saved, samples, input_size, gpu_friendly, ranges=int8_ranges,
                                       saturation_maps=saturation_maps)
        if mapped is not None:
            recipe = INT8_RECIPE
        else:
            _float_saved_model(source, saved, input_size)
        flat = convert_saved_model(saved, quantize, samples)
    metadata = {
        "format": "drn_tf.tflite/1",
        "scale": scale,
        "receptive_radius": radius,
        "quantize": quantize,
        "gpu_friendly": bool(gpu_friendly),
        "input_size": list(input_size) if input_size else None,
        "input": TFLITE_INPUT,
        "output": TFLITE_OUTPUT,
        "io": "uint8 pixels (scale 1/255, zero point 0)" if quantize == "int8" else "float32 RGB in [0, 1]",
    }
    if quantize == "int8":
        metadata["int8_recipe"] = recipe or "min-max calibration of the Keras model"
    if mapped:
        metadata["saturation"] = {"format": SATURATION_FORMAT, "block": SATURATION_BLOCK, "taps": mapped}
    maps = [saturation_output(i) for i in range(len(mapped or []))]
    standard = metadata_flatbuffer(describe(getattr(model, "name", None) or "drn", scale, radius, quantize,
                                            input_size, TFLITE_INPUT, TFLITE_OUTPUT, saturation_outputs=maps,
                                            saturation_block=SATURATION_BLOCK))
    return _postprocess(flat, metadata, pixel_io=quantize == "int8", standard=standard)


def convert_saved_model(saved_dir, quantize: str = "float32", samples=None) -> bytes:
    """``TFLiteConverter.from_saved_model`` on the ``serving_default`` signature, builtin ops only.

    ``samples`` (int8): float32 arrays fed to the signature's single input.
    Raises :class:`ExportError` when an op would need the Flex delegate
    (conversion error, or a custom/Flex op in the result).
    """
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if not samples:
            raise ExportError("int8 conversion needs calibration samples")
        loaded = tf.saved_model.load(str(saved_dir))
        (input_name,) = loaded.signatures["serving_default"].structured_input_signature[1].keys()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8

        def representative():
            for sample in samples:
                yield {input_name: np.asarray(sample, np.float32)[None]}

        converter.representative_dataset = representative
    elif quantize != "float32":
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    try:
        with quiet_stderr():
            flat = converter.convert()
    except Exception as exc:  # ConverterError, and anything the MLIR passes raise
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op is neither", text)))
        for match in re.finditer(r"(?:Flex|Custom|TF Select) ops: ([^\n]+)", text):
            ops += [f"tf.{name.strip()}" for name in match.group(1).split(",") if f"tf.{name.strip()}" not in ops]
        if ops or any(k in text for k in ("ERROR_NEEDS_FLEX_OPS", "ERROR_NEEDS_CUSTOM_OPS", "Select TF", "Flex")):
            raise ExportError(
                f"TFLite conversion needs TensorFlow ops that are not TFLite builtins ({', '.join(ops) or '?'}): "
                "they would need the TensorFlow (Flex) delegate, which this export refuses (builtin ops only, so the "
                "model runs in a plain LiteRT interpreter)"
            ) from None
        raise ExportError(f"TFLite conversion failed: {(lines or [type(exc).__name__])[0]}") from None
    check_builtin_only(flat)
    return flat
