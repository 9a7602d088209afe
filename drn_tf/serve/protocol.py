"""Request bodies to work items and results to response bodies, for the two protocols.

**V1**, TF Serving's REST API for the SavedModel's signatures (:mod:`drn_tf.export.savedmodel`), so a
client written for TF Serving works unchanged:

* ``serving_default`` (the default): uint8 ``images`` ``[h, w, 3]`` per instance, row format
  ``{"instances": [image, ...]}`` -> ``{"predictions": [sr_image, ...]}`` or columnar
  ``{"inputs": [image, ...]}`` / ``{"inputs": {"images": [...]}}`` -> ``{"outputs": [...]}``;
  an instance may also be ``{"images": image}``;
* ``upscale_bytes``: encoded images as ``{"b64": ...}`` (or ``{"image_bytes": {"b64": ...}}``) ->
  PNG files as ``{"b64": ...}``. Without ``signature_name``, ``{"b64": ...}`` instances are taken as
  ``upscale_bytes`` too.

**V2** (Open Inference Protocol, REST and gRPC): one input tensor, ``UINT8`` ``[h, w, 3]`` or ``[n, h, w, 3]`` ->
output ``sr_images`` (UINT8, same rank), or ``BYTES`` ``[n]`` of encoded images (base64 strings in
JSON, raw bytes with the binary extension and over gRPC) -> output ``sr_image_bytes`` (BYTES, PNG
files: base64 in JSON, raw over gRPC).

Everything wrong with a body is a :class:`~drn_tf.serve.work.RequestError` (400) naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np

from drn_tf.serve.work import RequestError

SIGNATURES = ("serving_default", "upscale_bytes")
PIXEL_INPUT, BYTES_INPUT = "images", "image_bytes"  # the SavedModel's input names
PIXEL_OUTPUT, BYTES_OUTPUT = "sr_images", "sr_image_bytes"


@dataclass
class Batch:
    """What a request asks for: ``kind`` ``"pixels"`` (uint8 arrays) or ``"bytes"`` (encoded images),
    the items, and how the answer is to be written (``"predictions"``, ``"outputs"``, or ``"v2"``)."""

    kind: str
    items: list
    answer: str
    v2_name: str = ""  # V2: the input tensor's name
    v2_batched: bool = True  # V2 UINT8: [n, h, w, 3] (else one [h, w, 3] image)


# ---------------------------------------------------------------- V1 (TF Serving REST)


def parse_v1(body, max_batch: int) -> Batch:
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object with \"instances\" or \"inputs\"")
    signature = body.get("signature_name") or None
    if signature is not None and signature not in SIGNATURES:
        raise RequestError(f"unknown signature_name {signature!r}; this model has {', '.join(SIGNATURES)}")
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("request body must have exactly one of \"instances\" (row format) or \"inputs\" (columnar)")
    answer = "predictions" if "instances" in body else "outputs"
    values = body.get("instances", body.get("inputs"))
    if answer == "outputs" and isinstance(values, dict):
        values = _named_column(values)
    if not isinstance(values, list) or not values:
        raise RequestError(f"\"{'instances' if answer == 'predictions' else 'inputs'}\" must be a non-empty list")
    if len(values) > max_batch:
        raise RequestError(f"{len(values)} images in one request; this server takes at most {max_batch}", 413)
    if signature is None:
        signature = "upscale_bytes" if all(_is_b64(_unwrap(v, BYTES_INPUT)) for v in values) else "serving_default"
    if signature == "upscale_bytes":
        return Batch("bytes", [_b64_bytes(_unwrap(v, BYTES_INPUT), i) for i, v in enumerate(values)], answer)
    return Batch("pixels", [pixels(_unwrap(v, PIXEL_INPUT), f"instance {i}") for i, v in enumerate(values)], answer)


def _named_column(inputs: dict):
    names = set(inputs) - {"signature_name"}
    if len(names) != 1 or not names <= {PIXEL_INPUT, BYTES_INPUT}:
        raise RequestError(f"\"inputs\" names {sorted(names)}; expected one of {PIXEL_INPUT!r}, {BYTES_INPUT!r}")
    return inputs[names.pop()]


def _unwrap(value, name: str):
    """An instance given by input name (``{"images": ...}``) -> the value."""
    if isinstance(value, dict) and set(value) == {name}:
        return value[name]
    return value


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _b64_bytes(value, index: int) -> bytes:
    if not _is_b64(value):
        raise RequestError(f"instance {index}: upscale_bytes takes {{\"b64\": \"...\"}} (base64 image files)")
    return b64decode(value["b64"], f"instance {index}")


def b64decode(text, where: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError(f"{where}: base64 text expected, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where}: not valid base64") from None


def pixels(value, where: str) -> np.ndarray:
    """A nested list (or array) -> uint8 ``(h, w, 3)``; 400 for any other shape, type or range."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise RequestError(f"{where}: not a rectangular array") from None
    arr = uint8_values(arr, where)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise RequestError(f"{where}: an image of shape [height, width, 3] expected, got {list(arr.shape)}")
    return arr


def uint8_values(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` as uint8; 400 unless it holds integers in 0-255."""
    if arr.dtype.kind not in "iu":
        kind = "ragged or non-numeric" if arr.dtype.kind in "OUSb" else str(arr.dtype)
        raise RequestError(f"{where}: uint8 pixels (integers 0-255) expected, got {kind} values")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise RequestError(f"{where}: pixel values must lie in 0-255")
    return arr.astype(np.uint8)


def answer_v1(batch: Batch, results: list) -> dict:
    if batch.kind == "bytes":
        values = [{"b64": base64.b64encode(r).decode("ascii")} for r in results]
    else:
        values = [r.tolist() for r in results]
    return {batch.answer: values}


# ---------------------------------------------------------------- V2 (Open Inference Protocol)


def parse_v2(request, max_batch: int) -> Batch:
    """A kserve ``InferRequest`` -> :class:`Batch`."""
    inputs = request.inputs
    if len(inputs) != 1:
        raise RequestError(f"one input tensor expected ({PIXEL_INPUT!r} UINT8 or {BYTES_INPUT!r} BYTES), got {len(inputs)}")
    tensor = inputs[0]
    shape = [int(d) for d in tensor.shape]
    if tensor.datatype == "BYTES":
        if len(shape) != 1:
            raise RequestError(f"BYTES input: shape [n] expected, got {shape}")
        items = [_v2_bytes(v, i) for i, v in enumerate(_flat(tensor))]
        _check_count(len(items), shape[0], max_batch)
        return Batch("bytes", items, "v2", tensor.name)
    if tensor.datatype != "UINT8":
        raise RequestError(f"input datatype must be UINT8 (pixels) or BYTES (image files), got {tensor.datatype}")
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise RequestError(f"UINT8 input: shape [h, w, 3] or [n, h, w, 3] expected, got {shape}")
    data = np.asarray(_flat(tensor))
    if data.size != int(np.prod(shape)):
        raise RequestError(f"UINT8 input: shape {shape} needs {int(np.prod(shape))} values, got {data.size}")
    arr = uint8_values(data.reshape(shape if len(shape) == 4 else [1, *shape]), "input")
    images = list(arr)
    _check_count(len(images), len(images), max_batch)
    return Batch("pixels", images, "v2", tensor.name, v2_batched=len(shape) == 4)


def _flat(tensor) -> list:
    if getattr(tensor, "_raw_data", None) is not None:  # binary extension (REST) or raw contents (gRPC)
        try:
            return tensor.as_numpy().reshape(-1).tolist()
        except ValueError as exc:
            raise RequestError(f"input {tensor.name!r}: {exc}") from None
    data = tensor.data
    if isinstance(data, np.ndarray):
        return data.reshape(-1).tolist()
    if data is None:
        raise RequestError(f"input {tensor.name!r} has no data")
    out, stack = [], [data]
    while stack:  # nested JSON lists, flattened in order
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _v2_bytes(value, index: int) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return b64decode(value, f"element {index}")


def _check_count(count: int, declared: int, max_batch: int) -> None:
    if count != declared:
        raise RequestError(f"shape says {declared} elements, the data has {count}")
    if count > max_batch:
        raise RequestError(f"{count} images in one request; this server takes at most {max_batch}", 413)


def answer_v2(batch: Batch, results: list, model_name: str, request) -> object:
    """The ``InferResponse``: PNG files base64 in JSON, raw over gRPC."""
    from kserve import InferOutput, InferResponse

    grpc = bool(getattr(request, "from_grpc", False))
    if batch.kind == "bytes":
        data = list(results) if grpc else [base64.b64encode(r).decode("ascii") for r in results]
        out = InferOutput(BYTES_OUTPUT, [len(results)], "BYTES", data)
    else:
        arr = np.stack(results) if batch.v2_batched else results[0]
        out = InferOutput(PIXEL_OUTPUT, list(arr.shape), "UINT8", arr.reshape(-1).tolist())
    return InferResponse(response_id=request.id or "", model_name=model_name, infer_outputs=[out], from_grpc=grpc,
                         use_binary_outputs=bool(request.use_binary_outputs))
