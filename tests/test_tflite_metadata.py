"""The standard TFLite metadata (``TFLITE_METADATA``, TFLite's metadata_schema.fbs) in every exported
``.tflite`` (drn_tf.export.tflite_metadata), written without tflite-support; the ``drn_tf`` JSON entry
stays beside it."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from drn_tf.export import tflite_metadata as M
from drn_tf.export.tflite import convert_tflite, tflite_metadata
from drn_tf.models.resolve import model_receptive_radius

# Field ids as declared in tensorflow_lite_support/metadata/metadata_schema.fbs (schema 1.1.0): a table's
# fields in declaration order, a union taking two ids (type, value). Read here straight from the bytes, so a
# wrong id in the writer's table (M.FIELDS) fails instead of being read back by the same mistake.
SCHEMA_IDS = {
    ("ModelMetadata", "name"): 0, ("ModelMetadata", "description"): 1, ("ModelMetadata", "version"): 2,
    ("ModelMetadata", "subgraph_metadata"): 3, ("ModelMetadata", "author"): 4, ("ModelMetadata", "license"): 5,
    ("ModelMetadata", "min_parser_version"): 7,
    ("SubGraphMetadata", "input_tensor_metadata"): 2, ("SubGraphMetadata", "output_tensor_metadata"): 3,
    ("TensorMetadata", "name"): 0, ("TensorMetadata", "content"): 3, ("TensorMetadata", "process_units"): 4,
    ("TensorMetadata", "stats"): 5,
    ("Content", "content_properties_type"): 0, ("Content", "content_properties"): 1,
    ("ImageProperties", "color_space"): 0, ("ImageProperties", "default_size"): 1,
    ("ImageSize", "width"): 0, ("ImageSize", "height"): 1,
    ("ProcessUnit", "options_type"): 0, ("ProcessUnit", "options"): 1,
    ("NormalizationOptions", "mean"): 0, ("NormalizationOptions", "std"): 1,
    ("Stats", "max"): 0, ("Stats", "min"): 1,
}


@pytest.fixture(scope="module")
def model(fresh_drn_s):
    return fresh_drn_s(2)


def _raw_input_tensor(flat: bytes):
    """The first input TensorMetadata of the file's TFLITE_METADATA, walked with the schema's ids (no M.FIELDS)."""
    import flatbuffers
    from flatbuffers import number_types as N
    from flatbuffers.table import Table
    from tensorflow.lite.python import schema_py_generated as schema

    tfl = schema.Model.GetRootAsModel(flat, 0)
    names = [(tfl.Metadata(i).Name() or b"").decode() for i in range(tfl.MetadataLength())]
    buf = bytes(tfl.Buffers(tfl.Metadata(names.index("TFLITE_METADATA")).Buffer()).DataAsNumpy())
    assert buf[4:8] == b"M001"  # the schema's file_identifier

    def field(t, table, name):
        return t.Offset(4 + 2 * SCHEMA_IDS[(table, name)])

    def sub(t, table, name):
        return Table(t.Bytes, t.Indirect(field(t, table, name) + t.Pos))

    def first(t, table, name):
        return Table(t.Bytes, t.Indirect(t.Vector(field(t, table, name))))

    def floats(t, table, name):
        o = field(t, table, name)
        return [t.Get(N.Float32Flags, t.Vector(o) + 4 * i) for i in range(t.VectorLen(o))]

    root = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    top = {k: root.String(field(root, "ModelMetadata", k) + root.Pos).decode()
           for k in ("name", "author", "license", "min_parser_version")}
    tensor = first(first(root, "ModelMetadata", "subgraph_metadata"), "SubGraphMetadata", "input_tensor_metadata")
    content = sub(tensor, "TensorMetadata", "content")
    image = sub(content, "Content", "content_properties")
    unit = first(tensor, "TensorMetadata", "process_units")
    norm = sub(unit, "ProcessUnit", "options")
    stats = sub(tensor, "TensorMetadata", "stats")
    return top, {
        "name": tensor.String(field(tensor, "TensorMetadata", "name") + tensor.Pos).decode(),
        "content_type": content.Get(N.Uint8Flags, field(content, "Content", "content_properties_type") + content.Pos),
        "color_space": image.Get(N.Int8Flags, field(image, "ImageProperties", "color_space") + image.Pos),
        "options_type": unit.Get(N.Uint8Flags, field(unit, "ProcessUnit", "options_type") + unit.Pos),
        "mean": floats(norm, "NormalizationOptions", "mean"), "std": floats(norm, "NormalizationOptions", "std"),
        "min": floats(stats, "Stats", "min"), "max": floats(stats, "Stats", "max"),
    }


def test_writer_field_ids_follow_the_schema():
    for (table, name), index in SCHEMA_IDS.items():
        assert M.FIELDS[table].index(name) == index, (table, name)


@pytest.mark.parametrize("quantize", ["float32", "int8"])
def test_every_tflite_carries_standard_metadata(model, quantize):
    calibration = [np.random.default_rng(0).random((24, 24, 3), dtype=np.float32)] if quantize == "int8" else None
    flat = convert_tflite(model, quantize, input_size=(24, 24) if quantize == "int8" else None, calibration=calibration)
    meta = M.read_metadata(flat)
    radius = model_receptive_radius(model)
    assert meta["name"] == model.name and meta["license"] == "Apache-2.0" and meta["author"]
    assert meta["min_parser_version"] == "1.0.0" and meta["version"].startswith("drn_tf ")
    assert "x2" in meta["description"] and f"overlap of {radius} input pixels" in meta["description"]
    (graph,) = meta["subgraphs"]
    (inp,), (out,) = graph["inputs"], graph["outputs"]
    assert (inp["name"], out["name"]) == ("lr_image", "sr_image")
    levels = 255.0 if quantize == "float32" else 1.0  # (pixel - mean) / std: [0, 1] floats or the pixels themselves
    top = 1.0 if quantize == "float32" else 255.0
    for t in (inp, out):
        assert t["color_space"] == "RGB" and t["dimension_names"] == ["batch", "height", "width", "channels"]
        assert t["mean"] == [0.0] and t["std"] == [levels] and t["min"] == [0.0] and t["max"] == [top]
    if quantize == "int8":
        assert inp["size"] == [24, 24] and out["size"] == [48, 48]
    else:
        assert inp["size"] is None
    top_raw, raw = _raw_input_tensor(flat)  # the same values through the schema's own ids
    assert top_raw == {k: meta[k] for k in top_raw}
    assert raw == {"name": "lr_image", "content_type": 2, "color_space": 1, "options_type": 1,
                   "mean": [0.0], "std": [levels], "min": [0.0], "max": [top]}
    assert tflite_metadata(flat)["scale"] == 2 and tflite_metadata(flat)["receptive_radius"] == radius  # drn_tf entry
    from drn_tf.inference.litert import LiteRTRuntime

    runtime = LiteRTRuntime(flat, num_threads=1)  # the interpreter still loads it
    assert runtime.run_batch(np.zeros((1, 24, 24, 3), np.uint8)).shape == (1, 48, 48, 3)
