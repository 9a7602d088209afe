"""The exported files the runtimes run (TFLite, ONNX, OpenVINO IR): where they come from, keyed without
loading the model.

An export is made from a *source*: a ``.keras`` file (:class:`ModelFile`: a preset's bundled model or a
user's file), or a Keras model in memory. Its key (:func:`source_digest`) is the SHA-256 of the file's bytes
(the zip of ``config.json`` and the weights: a changed model is a new key), or for a model in memory the
SHA-256 of its configuration and every weight (:func:`weights_digest`). So a ``.keras`` file's export is found
without importing TensorFlow or Keras; they load only to convert it, once.

Where the file comes from, first match:

1. the package: every bundled preset ships its float32 and int8 ``.tflite`` in ``assets/tflite/``
   (``converters/bundle_tflite.py``), named in ``assets/tflite/manifest.json`` with the SHA-256 of the
   ``.keras`` file they were converted from, and for int8 the recipe and a digest of the ranges. A shipped
   file is used only while those still match (the ``.keras`` file's bytes, :data:`INT8_RECIPE
   <drn_tf.export.int8.INT8_RECIPE>` and ``assets/int8.json``);
2. the user cache, ``<cache>/tflite/``, ``<cache>/onnx/``, ``<cache>/openvino/``
   (:func:`drn_tf.core.utils.default_cache_dir`; all in ``cache_dir`` when given), named by a hash of the
   source's digest, the export settings and the versions of drn_tf, TensorFlow and the converter (LiteRT,
   tf2onnx, onnx, OpenVINO) read from the installed packages' metadata;
3. a conversion, written atomically to the cache under a per-file lock (a second process waits and then
   finds the file), or to a temporary folder removed at exit where the cache cannot be written.

The int8 export of a bundled model uses the ranges shipped in ``assets/int8.json``
(``converters/bundle_int8.py``: per preset the weights digest, the recipe, the ranges), so it needs no
calibration images; a ``.keras`` file finds its entry through the manifest's ``weights`` (the weights digest
of the file whose SHA-256 it records). Other models calibrate on ``<data>/train`` and their key follows
those images. :func:`int8_calibration` is that choice, for the runtimes and for ``drn export tflite``.

This module imports no framework and no numpy at load time.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from pathlib import Path

INT8_MANIFEST = "int8.json"  # in the assets folder: the bundled models' int8 ranges (converters/bundle_int8.py)
BUNDLED_EXPORTS = "tflite"  # in the assets folder: the bundled models' .tflite files (converters/bundle_tflite.py)
BUNDLED_MANIFEST = "manifest.json"  # in that folder: what each file was converted from


# ---------------------------------------------------------------- sources


class ModelFile:
    """A ``.keras`` file as the source of an export: keyed by its bytes, loaded (Keras) only to convert it.

    ``preset``: the bundled preset it is, if any (its int8 ranges may then be found by loading it when the
    bundled manifest does not know the file)."""

    def __init__(self, path, preset: str | None = None):
        self.path = Path(path)
        self.preset = preset
        self._model = None

    def __repr__(self) -> str:
        return f"ModelFile({str(self.path)!r}, preset={self.preset!r})"

    @property
    def identity(self) -> tuple:
        """What tells this file's state apart: path, size, modification time."""
        st = self.path.stat()
        return ("file", str(self.path.resolve()), st.st_size, st.st_mtime_ns)

    @property
    def sha256(self) -> str:
        return file_sha256(self.path)

    @property
    def config(self) -> dict:
        """The model's configuration from the file's ``config.json`` (empty if it cannot be read)."""
        from drn_tf.models.resolve import model_file_config

        return model_file_config(self.path)

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.preset or self.path.stem)

    def load(self):
        """The Keras model (the backend started quietly), loaded once."""
        if self._model is None:
            from drn_tf.models.backend import import_backend_quietly
            from drn_tf.models.resolve import resolve_model

            try:
                import_backend_quietly()
            except ImportError as exc:  # an install without them runs shipped or cached files only
                from drn_tf.export.common import ExportError

                raise ExportError(f"{self.path} has not been converted for this runtime yet, and converting it "
                                  f"needs TensorFlow and Keras ({exc})") from None
            self._model = resolve_model(self.path)
        return self._model


def keras_model(source):
    """The Keras model of ``source`` (a :class:`ModelFile` is loaded; a model is returned as it is)."""
    return source.load() if isinstance(source, ModelFile) else source


_SHA256: dict = {}  # (path, size, mtime) -> SHA-256 of the file


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes (remembered per path, size and modification time)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def weights_digest(model) -> str:
    """SHA-256 of the model's configuration and every weight (names, shapes, dtypes, values)."""
    import numpy as np

    h = hashlib.sha256()
    try:
        h.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    except Exception:  # noqa: BLE001 - a model without a config: the weights alone
        pass
    for w in model.weights:
        value = np.ascontiguousarray(np.asarray(w))
        h.update(f"{w.path}|{value.shape}|{value.dtype}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def source_digest(source) -> str:
    """What an export's key hashes for its model: ``keras-file:<SHA-256 of the file>`` for a :class:`ModelFile`,
    else :func:`weights_digest`."""
    return f"keras-file:{source.sha256}" if isinstance(source, ModelFile) else weights_digest(source)


def source_name(source) -> str:
    """The model's name as a file name part."""
    name = source.name if isinstance(source, ModelFile) else (getattr(source, "name", None) or "model")
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)


def versions(packages=("tensorflow", "ai-edge-litert")) -> str:
    """``drn_tf=...;tensorflow=...;...``: the versions that make an export, read from the installed packages'
    metadata (nothing imported); ``?`` for a package that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    from drn_tf.core.version import VERSION

    out = [f"drn_tf={VERSION}"]
    for pkg in packages:
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=?")
    return ";".join(out)


# ---------------------------------------------------------------- what the package ships


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def bundled_manifest() -> dict:
    """``assets/tflite/manifest.json``: preset -> ``keras_sha256``, ``weights``, ``versions``, ``files``
    (``{quantize: {file, sha256, bytes[, recipe, ranges_sha256]}}``); empty when not shipped."""
    from drn_tf.core.utils import assets_dir

    found = _read_json(assets_dir() / BUNDLED_EXPORTS / BUNDLED_MANIFEST)
    return found if isinstance(found, dict) else {}


def _manifest_entry(source) -> tuple[str, dict] | None:
    """``(preset, entry)`` of the bundled manifest whose ``.keras`` file has ``source``'s bytes."""
    if not isinstance(source, ModelFile):
        return None
    manifest = bundled_manifest()
    if not manifest:
        return None
    sha = source.sha256
    for preset, entry in manifest.items():
        if isinstance(entry, dict) and entry.get("keras_sha256") == sha:
            return preset, entry
    return None


def _weights_of(source) -> str:
    """The weights digest of ``source`` (as ``assets/int8.json`` records it): a Keras model's own; a
    ``.keras`` file's from the bundled manifest, else (a bundled preset the manifest does not know yet)
    by loading it; '' for another file."""
    if not isinstance(source, ModelFile):
        return weights_digest(source)
    found = _manifest_entry(source)
    if found is not None and found[1].get("weights"):
        return str(found[1]["weights"])
    return weights_digest(source.load()) if source.preset else ""


def ranges_digest(ranges: dict) -> str:
    """SHA-256 of a set of int8 ranges (how the manifest tells which ranges a shipped int8 file has)."""
    canonical = {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(ranges.items())}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def bundled_int8_ranges(model) -> dict | None:
    """The calibrated int8 tap ranges shipped for ``model`` (a Keras model or a :class:`ModelFile`):
    ``assets/int8.json`` holds per bundled preset the SHA-256 of its weights, the int8 recipe and the ranges,
    calibrated on the 291 training images by ``converters/bundle_int8.py``. Returned when ``model`` has exactly
    those weights and the recipe is the current one; else None. With them the int8 export needs no calibration
    images (a fresh install converts without data) and is the same model as one calibrated on the training
    images."""
    found = _bundled_int8_entry(model)
    return found[1] if found is not None else None


def _bundled_int8_entry(model) -> tuple[str, dict] | None:
    """``(preset, ranges)`` of the ``assets/int8.json`` entry made from ``model``'s weights with the current
    recipe (:func:`bundled_int8_ranges`), or None."""
    from drn_tf.core.utils import assets_dir
    from drn_tf.export.int8 import INT8_RECIPE

    entries = _read_json(assets_dir() / INT8_MANIFEST)
    if not isinstance(entries, dict):
        return None
    digest = None
    for preset, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("recipe") != INT8_RECIPE or not isinstance(entry.get("ranges"), dict):
            continue
        digest = _weights_of(model) if digest is None else digest
        if digest and entry.get("weights") == digest:
            return preset, {k: (float(lo), float(hi)) for k, (lo, hi) in entry["ranges"].items()}
    return None


def int8_calibration(model, calibration=None) -> tuple[dict | None, str]:
    """Where the int8 export of ``model`` (a Keras model or a :class:`ModelFile`) takes its activation ranges
    from: ``(ranges, said)``. Without a ``calibration`` folder, the ranges shipped for a bundled preset's
    weights (:func:`bundled_int8_ranges`: no images read); else, or for other weights, None: the export
    calibrates on ``calibration`` (default ``<data>/train``). ``said`` names the source in words."""
    if calibration is None:
        found = _bundled_int8_entry(model)
        if found is not None:
            return found[1], f"bundled with preset {found[0]} (assets/{INT8_MANIFEST}; no calibration images read)"
    from drn_tf.export.common import default_data_dir

    return None, f"calibrated on {calibration if calibration is not None else default_data_dir() / 'train'}"


def bundled_tflite(source, quantize: str) -> Path | None:
    """The ``.tflite`` the package ships for ``source`` (a :class:`ModelFile` with a bundled model's bytes), if
    it is current: for int8, converted with the current recipe, the ranges ``assets/int8.json`` holds now and the
    current saturation maps."""
    from drn_tf.core.utils import assets_dir

    found = _manifest_entry(source)
    if found is None:
        return None
    item = (found[1].get("files") or {}).get(quantize)
    if not isinstance(item, dict) or not item.get("file"):
        return None
    if quantize == "int8":
        from drn_tf.export.int8 import INT8_RECIPE, SATURATION_FORMAT

        ranges = bundled_int8_ranges(source)
        if (item.get("recipe") != INT8_RECIPE or ranges is None or item.get("ranges_sha256") != ranges_digest(ranges)
                or item.get("saturation") != SATURATION_FORMAT):
            return None
    path = assets_dir() / BUNDLED_EXPORTS / item["file"]
    return path if path.is_file() and path.stat().st_size == item.get("bytes", path.stat().st_size) else None


# ---------------------------------------------------------------- the user cache


def tflite_cache_dir() -> Path:
    return default_cache_root() / "tflite"


def default_cache_root() -> Path:
    from drn_tf.core.utils import default_cache_dir

    return default_cache_dir()


def tflite_settings(model, quantize: str) -> dict:
    """The export settings in the key of ``model``'s TFLite file: quantization, format, and for int8 the recipe
    with the bundled ranges, else the calibration images."""
    from drn_tf.export.common import default_data_dir
    from drn_tf.export.int8 import CALIBRATION_COUNT, CALIBRATION_PATCH, INT8_RECIPE, SATURATION_FORMAT

    settings = {"quantize": quantize, "format": "dynamic-size, builtin ops", "metadata": "drn_tf, TFLITE_METADATA"}
    if quantize == "int8":
        settings["saturation"] = SATURATION_FORMAT
        ranges, _ = int8_calibration(model)
        if ranges is not None:  # the bundled calibration: no data involved
            settings.update(recipe=INT8_RECIPE, ranges=ranges)
        else:
            train = default_data_dir() / "train"
            settings.update(recipe=INT8_RECIPE, count=CALIBRATION_COUNT, patch=CALIBRATION_PATCH,
                            data=str(train), calibration_files=_listing(train))
    return settings


def tflite_cache_key(model, quantize: str) -> str:
    """Cache key of the TFLite export of ``model`` (a Keras model or a :class:`ModelFile`): its digest
    (:func:`source_digest`), the export settings, the versions."""
    raw = json.dumps([source_digest(model), tflite_settings(model, quantize), versions()], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _listing(folder: Path) -> str:
    """Digest of the image files under ``folder`` (relative path, size, modification time): new or
    changed calibration images make a new int8 file."""
    from drn_tf.core.imageio import list_images

    h = hashlib.sha256()
    try:
        files = list_images(folder) if folder.is_dir() else []
    except Exception:  # noqa: BLE001 - unreadable folder: the conversion will say why
        files = []
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(folder)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@contextlib.contextmanager
def _conversion_lock(folder: Path, name: str):
    """An exclusive lock per cache file while it is converted: a second process waits for the first
    and then finds the file instead of converting it again. No lock where the folder is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fh = open(folder / f".{name}.lock", "a+")
    except OSError:
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_tflite(model, quantize: str, cache_dir=None, progress=None) -> Path:
    """Path of the TFLite export of ``model`` (a Keras model or a :class:`ModelFile`; ``float32`` or ``int8``):
    the file the package ships for it, else the cached one, converted on a miss. int8 files carry the saturation
    maps the runtime's guard reads (:mod:`drn_tf.inference.saturation`)."""
    shipped = bundled_tflite(model, quantize)
    if shipped is not None:
        return shipped

    def make():
        from drn_tf.export.tflite import convert_tflite

        ranges = int8_calibration(model)[0] if quantize == "int8" else None
        return {".tflite": convert_tflite(keras_model(model), quantize, int8_ranges=ranges,
                                          saturation_maps=quantize == "int8")}

    folder = Path(cache_dir) if cache_dir is not None else tflite_cache_dir()
    return cached_export(model, folder, f"{quantize}-{tflite_cache_key(model, quantize)}", ".tflite", make,
                         f"TFLite {quantize}", progress)


def export_cache_key(model, settings: dict, packages=()) -> str:
    """Cache key of an export of ``model`` (as :func:`tflite_cache_key`): its digest, ``settings``, the versions
    of drn_tf, TensorFlow and ``packages``."""
    raw = json.dumps([source_digest(model), settings, versions(("tensorflow", *packages))], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def cached_onnx(model, cache_dir=None, progress=None) -> Path:
    """Path of the cached ONNX export of ``model`` (dynamic size, :func:`drn_tf.export.onnx.convert_onnx`)."""
    from drn_tf.export import onnx as export_onnx

    settings = {"format": "onnx, dynamic-size", "opset": export_onnx.ONNX_OPSET}
    folder = Path(cache_dir) if cache_dir is not None else default_cache_root() / "onnx"
    return cached_export(model, folder, export_cache_key(model, settings, ("tf2onnx", "onnx")), ".onnx",
                         lambda: {".onnx": export_onnx.convert_onnx(keras_model(model))}, "ONNX", progress)


def cached_openvino(model, cache_dir=None, progress=None) -> Path:
    """Path of the cached OpenVINO IR (``.xml``; its ``.bin`` beside it) of ``model``, float32 weights."""
    import tempfile

    from drn_tf.export import onnx as export_onnx

    settings = {"format": "openvino IR from onnx, dynamic-size, fp32 weights", "opset": export_onnx.ONNX_OPSET}

    def make():
        with tempfile.TemporaryDirectory(prefix="drn-openvino-") as tmp:
            xml = export_onnx.convert_openvino(keras_model(model), tmp)
            return {".bin": xml.with_suffix(".bin").read_bytes(), ".xml": xml.read_bytes()}

    folder = Path(cache_dir) if cache_dir is not None else default_cache_root() / "openvino"
    key = export_cache_key(model, settings, ("tf2onnx", "onnx", "openvino"))
    return cached_export(model, folder, key, ".xml", make, "OpenVINO IR", progress)


def cached_export(model, folder: Path, tag: str, suffix: str, make, what: str, progress=None) -> Path:
    """The file ``folder/<model name>-<tag><suffix>``, made on a miss by ``make()`` -> ``{suffix: bytes}`` (the
    main ``suffix`` last, so it exists only once its companions do), each written atomically under a per-file lock.
    Where ``folder`` cannot be written the files go to a temporary folder removed at exit (a warning says so)."""
    from drn_tf.core.utils import write_atomic

    path = folder / f"{source_name(model)}-{tag}{suffix}"
    if path.is_file() and path.stat().st_size > 0:
        return path
    with _conversion_lock(folder, path.name):
        if path.is_file() and path.stat().st_size > 0:  # another process converted it meanwhile
            return path
        if progress is not None:
            progress(f"converting the model to {what} (once; cached in {folder}) ...")
        files = make()
        try:
            for ext, data in files.items():
                written = write_atomic(path.with_suffix(ext), data)
            return written
        except OSError as exc:  # a read-only or full cache: use the model without caching it
            import atexit
            import tempfile
            import warnings

            warnings.warn(f"{what} cache {folder} not used: {exc.strerror or exc}", stacklevel=3)
            if not _SCRATCH:
                atexit.register(remove_scratch)  # nothing left in /tmp at exit
            _SCRATCH.append(tempfile.mkdtemp(prefix="drn-export-"))
            for ext, data in files.items():
                written = write_atomic(Path(_SCRATCH[-1]) / path.with_suffix(ext).name, data)
            return written


_SCRATCH: list = []  # temporary folders of models that could not be cached


def remove_scratch() -> None:
    """Remove the temporary copies made where the cache could not be written (runs at exit)."""
    import shutil

    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


__all__ = ["BUNDLED_EXPORTS", "BUNDLED_MANIFEST", "INT8_MANIFEST", "ModelFile", "bundled_int8_ranges",
           "bundled_manifest", "bundled_tflite", "cached_export", "cached_onnx", "cached_openvino", "cached_tflite",
           "export_cache_key", "file_sha256", "int8_calibration", "keras_model", "ranges_digest", "remove_scratch",
           "source_digest", "tflite_cache_key", "versions", "weights_digest"]
