"""Standard TFLite metadata (the ``TFLITE_METADATA`` entry Android Studio, the TFLite Support and Task
libraries read), written and read without the tflite-support package.

The entry is a flatbuffer of TFLite's metadata schema
(``tensorflow_lite_support/metadata/metadata_schema.fbs``, schema version 1.1.0,
file identifier ``M001``), stored as one of the model's buffers and named in the
model's ``metadata`` list, as the converter stores ``min_runtime_version``. Only
fields of schema 1.0.0 are written, so ``min_parser_version`` is ``1.0.0``.

What is written (:func:`metadata_flatbuffer`): the model's name, description,
version, author and license; for the input ``lr_image`` and the output
``sr_image`` an RGB image content, the normalisation ``(x - mean) / std`` from
8-bit pixels (float models: mean 0, std 255, values in [0, 1]; the full-int8
model: mean 0, std 1, uint8 pixels) and the value range in ``stats``.
:func:`read_metadata` reads the same tables back by the schema's field ids.

The field ids (a table's fields numbered in declaration order; a union field
takes two ids, its type then its value) are in :data:`FIELDS`.

The model's own metadata list (TFLite's ``schema.fbs``: ``Model.metadata`` naming
``Model.buffers``) is read the same way, without TensorFlow: :func:`metadata_entries`
(every entry's bytes) and :func:`drn_metadata` (the ``drn_tf`` JSON entry that
:func:`drn_tf.export.tflite.convert_tflite` writes: scale, receptive radius,
quantization, int8 recipe), so the LiteRT runtime opens a file with the
``flatbuffers`` package alone.
"""

from __future__ import annotations

FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
METADATA_ENTRY = "TFLITE_METADATA"

# metadata_schema.fbs field ids (declaration order; union = type id, value id)
FIELDS = {
    "ModelMetadata": ("name", "description", "version", "subgraph_metadata", "author", "license",
                      "associated_files", "min_parser_version"),
    "SubGraphMetadata": ("name", "description", "input_tensor_metadata", "output_tensor_metadata",
                         "associated_files", "input_process_units", "output_process_units"),
    "TensorMetadata": ("name", "description", "dimension_names", "content", "process_units", "stats",
                       "associated_files"),
    "Content": ("content_properties_type", "content_properties", "range"),
    "ImageProperties": ("color_space", "default_size"),
    "ImageSize": ("width", "height"),
    "ProcessUnit": ("options_type", "options"),
    "NormalizationOptions": ("mean", "std"),
    "Stats": ("max", "min"),
    # schema.fbs (the TFLite model itself): the tables that lead to the metadata entries
    "Model": ("version", "operator_codes", "subgraphs", "description", "buffers", "metadata_buffer", "metadata",
              "signature_defs"),
    "Buffer": ("data", "offset", "size"),
    "Metadata": ("name", "buffer"),
}
TFLITE_IDENTIFIER = b"TFL3"
CONTENT_IMAGE = 2  # union ContentProperties { FeatureProperties = 1, ImageProperties = 2, BoundingBoxProperties = 3 }
OPTIONS_NORMALIZATION = 1  # union ProcessUnitOptions { NormalizationOptions = 1, ... }
COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}  # enum ColorSpaceType : byte


def _id(table: str, field: str) -> int:
    return FIELDS[table].index(field)


# ---------------------------------------------------------------- writing


class _Writer:
    def __init__(self):
        import flatbuffers

        self.b = flatbuffers.Builder(1024)

    def strings(self, values):
        return {k: self.b.CreateString(v) for k, v in values.items() if v is not None}

    def floats(self, values):
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependFloat32(float(v))
        return self.b.EndVector()

    def offsets(self, offsets):
        self.b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def table(self, name: str, offsets=None, scalars=None):
        """One table: ``offsets`` {field: offset of a string/vector/table}, ``scalars`` {field: (kind, value)}."""
        b = self.b
        b.StartObject(len(FIELDS[name]))
        for field, off in (offsets or {}).items():
            b.PrependUOffsetTRelativeSlot(_id(name, field), off, 0)
        for field, (kind, value) in (scalars or {}).items():
            getattr(b, f"Prepend{kind}Slot")(_id(name, field), value, 0)
        return b.EndObject()

    def tensor(self, t: dict):
        strings = self.strings({"name": t["name"], "description": t["description"]})
        dims = self.offsets([self.b.CreateString(d) for d in ("batch", "height", "width", "channels")])
        if "mean" not in t:  # a feature tensor (a saturation map): name, description, dimensions
            return self.table("TensorMetadata", offsets=dict(strings, dimension_names=dims))
        size = None
        if t.get("size"):
            h, w = t["size"]
            size = self.table("ImageSize", scalars={"width": ("Uint32", int(w)), "height": ("Uint32", int(h))})
        image = self.table("ImageProperties", offsets={"default_size": size} if size else None,
                           scalars={"color_space": ("Int8", 1)})
        content = self.table("Content", offsets={"content_properties": image},
                             scalars={"content_properties_type": ("Uint8", CONTENT_IMAGE)})
        norm = self.table("NormalizationOptions",
                          offsets={"mean": self.floats(t["mean"]), "std": self.floats(t["std"])})
        unit = self.table("ProcessUnit", offsets={"options": norm},
                          scalars={"options_type": ("Uint8", OPTIONS_NORMALIZATION)})
        stats = self.table("Stats", offsets={"max": self.floats([t["max"]]), "min": self.floats([t["min"]])})
        return self.table("TensorMetadata", offsets=dict(strings, dimension_names=dims, content=content,
                                                         process_units=self.offsets([unit]), stats=stats))


def metadata_flatbuffer(info: dict) -> bytes:
    """The ``TFLITE_METADATA`` flatbuffer of :func:`describe`'s dictionary."""
    w = _Writer()
    inputs = w.offsets([w.tensor(info["input"])])
    outputs = w.offsets([w.tensor(t) for t in [info["output"], *info.get("extra_outputs", [])]])
    names = w.strings({"name": info["name"], "description": info["description"]})
    sub = w.table("SubGraphMetadata",
                  offsets=dict(names, input_tensor_metadata=inputs, output_tensor_metadata=outputs))
    strings = w.strings({k: info[k] for k in ("name", "description", "version", "author", "license")})
    strings["min_parser_version"] = w.b.CreateString(MIN_PARSER_VERSION)
    root = w.table("ModelMetadata", offsets=dict(strings, subgraph_metadata=w.offsets([sub])))
    w.b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(w.b.Output())


def describe(name: str, scale: int, radius: int, quantize: str, input_size, input_name: str, output_name: str,
             saturation_outputs=(), saturation_block: int = 0) -> dict:
    """What the metadata says about a DRN TFLite file (the dictionary :func:`metadata_flatbuffer` writes and
    :func:`read_metadata` returns); ``saturation_outputs``: the names of the int8 file's saturation maps,
    outputs after the image."""
    from drn_tf.core.version import VERSION

    pixels = quantize == "int8"
    norm = dict(mean=[0.0], std=[1.0] if pixels else [255.0], min=0.0, max=255.0 if pixels else 1.0)
    kind = "uint8 RGB pixels" if pixels else "float32 RGB in [0, 1] (8-bit pixels / 255)"
    size = list(input_size) if input_size else None
    extent = f"{size[0]}x{size[1]}" if size else "any size (resize the input tensor)"
    return {
        "name": name,
        "description": (f"DRN single-image super-resolution x{scale} (Sun et al., arXiv 1907.02843), "
                        f"TFLite {quantize}: an RGB image of {extent} in, the image upscaled x{scale} out. "
                        f"Tile larger images with an overlap of {radius} input pixels; the result then equals "
                        "a whole-image run."),
        "version": f"drn_tf {VERSION}",
        "author": "drn_tf",
        "license": "Apache-2.0",
        "input": dict(norm, name=input_name, size=size, description=f"low-resolution image, {kind}, NHWC"),
        "output": dict(norm, name=output_name, size=[size[0] * scale, size[1] * scale] if size else None,
                       description=f"the image upscaled x{scale}, {kind}, NHWC (clipped to the range)"),
        "extra_outputs": [
            dict(name=n, description=f"int8 saturation map {i} (a convolution's output): its per-channel maximum over "
                                     f"{saturation_block}x{saturation_block} input pixels; the top level marks a "
                                     "block where that output was clipped")
            for i, n in enumerate(saturation_outputs)
        ],
    }


# ---------------------------------------------------------------- reading


class _Table:
    """A flatbuffer table read by field id."""

    def __init__(self, buf, pos: int, name: str):
        from flatbuffers import table

        self.t, self.name = table.Table(buf, pos), name

    def _offset(self, field: str) -> int:
        return self.t.Offset(4 + 2 * _id(self.name, field))

    def string(self, field):
        o = self._offset(field)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def scalar(self, field, kind):
        from flatbuffers import number_types as N

        o = self._offset(field)
        return self.t.Get(getattr(N, f"{kind}Flags"), o + self.t.Pos) if o else 0

    def table(self, field, name):
        o = self._offset(field)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos), name) if o else None

    def vector(self, field):
        """(start, length) of a vector field, or (0, 0)."""
        o = self._offset(field)
        return (self.t.Vector(o), self.t.VectorLen(o)) if o else (0, 0)

    def tables(self, field, name):
        start, n = self.vector(field)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i), name) for i in range(n)]

    def strings(self, field):
        start, n = self.vector(field)
        return [self.t.String(start + 4 * i).decode() for i in range(n)]

    def floats(self, field):
        from flatbuffers import number_types as N

        start, n = self.vector(field)
        return [self.t.Get(N.Float32Flags, start + 4 * i) for i in range(n)]


def _tensor(t: _Table) -> dict:
    out = {"name": t.string("name"), "description": t.string("description"),
           "dimension_names": t.strings("dimension_names")}
    content = t.table("content", "Content")
    if content is not None and content.scalar("content_properties_type", "Uint8") == CONTENT_IMAGE:
        image = content.table("content_properties", "ImageProperties")
        out["color_space"] = COLOR_SPACES.get(image.scalar("color_space", "Int8"), "?")
        size = image.table("default_size", "ImageSize")
        out["size"] = [size.scalar("height", "Uint32"), size.scalar("width", "Uint32")] if size else None
    for unit in t.tables("process_units", "ProcessUnit"):
        if unit.scalar("options_type", "Uint8") == OPTIONS_NORMALIZATION:
            norm = unit.table("options", "NormalizationOptions")
            out["mean"], out["std"] = norm.floats("mean"), norm.floats("std")
    stats = t.table("stats", "Stats")
    if stats is not None:
        out["max"], out["min"] = stats.floats("max"), stats.floats("min")
    return out


def parse_metadata_flatbuffer(data: bytes) -> dict:
    """The fields :func:`metadata_flatbuffer` writes, read from a ``TFLITE_METADATA`` flatbuffer."""
    import flatbuffers

    data = bytes(data)
    if data[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"not a TFLite metadata flatbuffer (file identifier {data[4:8]!r}, "
                         f"expected {FILE_IDENTIFIER!r})")
    root = _Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0), "ModelMetadata")
    out = {k: root.string(k) for k in ("name", "description", "version", "author", "license", "min_parser_version")}
    out["subgraphs"] = []
    for sub in root.tables("subgraph_metadata", "SubGraphMetadata"):
        out["subgraphs"].append({
            "name": sub.string("name"),
            "inputs": [_tensor(t) for t in sub.tables("input_tensor_metadata", "TensorMetadata")],
            "outputs": [_tensor(t) for t in sub.tables("output_tensor_metadata", "TensorMetadata")],
        })
    return out


def _model_bytes(tflite) -> bytes:
    import os
    from pathlib import Path

    return Path(tflite).read_bytes() if isinstance(tflite, (str, os.PathLike)) else bytes(tflite)


def metadata_entries(tflite) -> dict[str, bytes]:
    """Every entry of a TFLite model's ``metadata`` list (a file or its bytes): name -> the bytes of the buffer
    it names (a buffer stored past the flatbuffer, ``offset``/``size``, included). ValueError for bytes that are
    not a TFLite model."""
    import flatbuffers

    data = _model_bytes(tflite)
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ValueError(f"not a TFLite model (file identifier {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r})")
    model = _Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0), "Model")
    buffers = model.tables("buffers", "Buffer")
    out = {}
    for entry in model.tables("metadata", "Metadata"):
        index = entry.scalar("buffer", "Uint32")
        if not 0 <= index < len(buffers):
            continue
        buffer = buffers[index]
        start, n = buffer.vector("data")
        offset, size = buffer.scalar("offset", "Uint64"), buffer.scalar("size", "Uint64")
        out[entry.string("name") or ""] = data[start:start + n] if n or offset <= 1 else data[offset:offset + size]
    return out


def drn_metadata(tflite) -> dict:
    """The ``drn_tf`` metadata of a TFLite file or its bytes (JSON: scale, receptive radius, quantization, the
    int8 recipe, ...); an empty dict if it has none."""
    import json

    from drn_tf.export.common import METADATA_NAME

    entry = metadata_entries(tflite).get(METADATA_NAME)
    return json.loads(entry.decode()) if entry is not None else {}


def read_metadata(tflite) -> dict | None:
    """The ``TFLITE_METADATA`` entry of a TFLite file or its bytes, parsed (None if it has none)."""
    entry = metadata_entries(tflite).get(METADATA_ENTRY)
    return parse_metadata_flatbuffer(entry) if entry is not None else None


__all__ = ["FIELDS", "METADATA_ENTRY", "describe", "drn_metadata", "metadata_entries", "metadata_flatbuffer",
           "parse_metadata_flatbuffer", "read_metadata"]
