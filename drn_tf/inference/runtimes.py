"""Inference runtimes: Keras (TensorFlow) or LiteRT running the exported TFLite model.

``drn upscale --runtime`` and ``drn_tf.upscale(..., runtime=...)``:

* ``keras``: the Keras model (TensorFlow, oneDNN on CPUs);
* ``litert``: the float32 TFLite export of the same model in LiteRT
  (XNNPACK); the same outputs within float rounding;
* ``litert-int8``: the full-integer TFLite export (uint8 pixels in and out):
  faster, and a different output (within the int8 loss that
  ``drn export report`` measures);
* ``auto`` (default): the faster float runtime on this CPU,
  :func:`default_runtime`.

The TFLite models are converted on first use and cached under
``<cache>/tflite/`` (the user cache folder of :func:`drn_tf.data.patches.default_cache_dir`),
named by a hash of the model's weights and configuration, the export
settings and the TensorFlow / LiteRT / drn_tf versions, and written
atomically, so a second run loads the file and a changed model gets a new one.

A :class:`LiteRTModel` stands in for the Keras model in
:mod:`drn_tf.inference.upscale` (``predict_on_batch``, ``get_config()["scale"]``,
``receptive_radius``), so the TFLite runtimes use the same tiling plan
(:func:`drn_tf.core.tiling.tile_starts`): equal-shape tiles overlapping by the
receptive radius, whose cores equal a whole-image run of that TFLite model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from drn_tf.core.tiling import tile_starts
from drn_tf.core.utils import quiet_stderr
from drn_tf.export.common import ExportError
from drn_tf.export.tflite import tflite_metadata

RUNTIMES = ("auto", "keras", "litert", "litert-int8")
QUANTIZE = {"litert": "float32", "litert-int8": "int8"}

# What `auto` picks, from the CPU flags, measured 256x256 x2 with drn_x2 (keras `predict_on_batch` against
# LiteRT float32 `invoke`, interleaved): AVX-512 (AMD EPYC, avx512f + avx512_vnni, 2 cores): Keras 720 ms,
# LiteRT 824 ms (assets/benchmark.md) -> keras; AVX2 only (same machine kind, no AVX-512): Keras 1,398 ms,
# LiteRT 1,096 ms (issue 17) -> litert. oneDNN's AVX-512 convolutions are what put Keras ahead.
AUTO_RULE = "keras on CPUs with AVX-512 (avx512f), litert otherwise"


def default_runtime(flags=None) -> str:
    """The faster float runtime on this CPU (see :data:`AUTO_RULE`)."""
    from drn_tf.core.utils import cpu_flags

    flags = cpu_flags() if flags is None else flags
    return "keras" if "avx512f" in flags else "litert"


def resolve_runtime(name: str | None) -> str:
    """``auto``/None -> :func:`default_runtime`; other names checked against :data:`RUNTIMES`."""
    name = name or "auto"
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {name!r}")
    return default_runtime() if name == "auto" else name


def tflite_cache_dir() -> Path:
    from drn_tf.data.patches import default_cache_dir

    return default_cache_dir() / "tflite"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from drn_tf.core.version import VERSION

    out = [f"drn_tf={VERSION}"]
    for pkg in ("tensorflow", "ai-edge-litert"):
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=?")
    return ";".join(out)


def weights_digest(model) -> str:
    """SHA-256 of the model's configuration and every weight (names, shapes, dtypes, values)."""
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


def tflite_cache_key(model, quantize: str) -> str:
    """Cache key of the TFLite export of ``model``: weights, export settings, versions."""
    from drn_tf.export.common import default_data_dir
    from drn_tf.export.int8 import CALIBRATION_COUNT, CALIBRATION_PATCH, INT8_RECIPE

    settings = {"quantize": quantize, "format": "dynamic-size, builtin ops"}
    if quantize == "int8":
        ranges = bundled_int8_ranges(model)
        if ranges is not None:  # the bundled calibration: no data involved
            settings.update(recipe=INT8_RECIPE, ranges=ranges)
        else:
            train = default_data_dir() / "train"
            settings.update(recipe=INT8_RECIPE, count=CALIBRATION_COUNT, patch=CALIBRATION_PATCH,
                            data=str(train), calibration_files=_listing(train))
    raw = json.dumps([weights_digest(model), settings, _versions()], sort_keys=True)
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


INT8_MANIFEST = "int8.json"  # in the assets folder: the bundled models' int8 ranges (converters/bundle_int8.py)


def bundled_int8_ranges(model) -> dict | None:
    """The calibrated int8 tap ranges shipped for ``model`` (``assets/int8.json``: per bundled preset the
    SHA-256 of its weights, the int8 recipe and the ranges, calibrated on the 291 training images by
    ``converters/bundle_int8.py``), when ``model`` has exactly those weights and the recipe is the current
    one; else None. With them the int8 export needs no calibration images (a fresh install converts
    without data) and is the same model as one calibrated on the training images."""
    from drn_tf.core.utils import assets_dir
    from drn_tf.export.int8 import INT8_RECIPE

    manifest = assets_dir() / INT8_MANIFEST
    if not manifest.is_file():
        return None
    try:
        entries = json.loads(manifest.read_text())
    except ValueError:
        return None
    digest = None
    for entry in entries.values():
        if entry.get("recipe") != INT8_RECIPE or not isinstance(entry.get("ranges"), dict):
            continue
        digest = digest or weights_digest(model)
        if entry.get("weights") == digest:
            return {k: (float(lo), float(hi)) for k, (lo, hi) in entry["ranges"].items()}
    return None


def cached_tflite(model, quantize: str, cache_dir=None, progress=None) -> Path:
    """Path of the cached TFLite export of ``model`` (``float32`` or ``int8``), converting it on a miss."""
    from drn_tf.core.utils import write_atomic
    from drn_tf.export.tflite import convert_tflite

    folder = Path(cache_dir) if cache_dir is not None else tflite_cache_dir()
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in (getattr(model, "name", None) or "model"))
    path = folder / f"{name}-{quantize}-{tflite_cache_key(model, quantize)}.tflite"
    if path.is_file() and path.stat().st_size > 0:
        return path
    with _conversion_lock(folder, path.name):
        if path.is_file() and path.stat().st_size > 0:  # another process converted it meanwhile
            return path
        if progress is not None:
            progress(f"converting the model to TFLite {quantize} (once; cached in {folder}) ...")
        flat = convert_tflite(model, quantize, int8_ranges=bundled_int8_ranges(model) if quantize == "int8" else None)
        try:
            return write_atomic(path, flat)
        except OSError as exc:  # a read-only or full cache: use the model without caching it
            import atexit
            import tempfile
            import warnings

            warnings.warn(f"TFLite cache {folder} not used: {exc.strerror or exc}", stacklevel=2)
            if not _SCRATCH:
                atexit.register(remove_scratch)  # nothing left in /tmp at exit
            _SCRATCH.append(tempfile.mkdtemp(prefix="drn-tflite-"))
            return write_atomic(Path(_SCRATCH[-1]) / path.name, flat)


_SCRATCH: list = []  # temporary folders of models that could not be cached


def remove_scratch() -> None:
    """Remove the temporary copies made where the cache could not be written (runs at exit)."""
    import shutil

    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


class LiteRTModel:
    """A TFLite DRN model in LiteRT, standing in for the Keras model in :mod:`drn_tf.inference.upscale`.

    ``predict_on_batch`` takes float32 ``(n, h, w, 3)`` in [0, 1] and
    returns float32 ``(n, h*s, w*s, 3)`` in [0, 1]. An int8 model gets the
    input rounded to 8-bit pixels (exact for 8-bit images) and returns its
    pixels / 255.
    """

    def __init__(self, path, runtime: str, num_threads: int | None = None):
        pass

        self.path = Path(path)
        self.runtime = runtime
        self.runner = TFLiteUpscaler(self.path, num_threads=num_threads)
        self.scale = self.runner.scale
        self.receptive_radius = int(self.runner.metadata["receptive_radius"])
        self.name = self.path.stem

    def get_config(self) -> dict:
        return {"scale": self.scale}

    def predict_on_batch(self, batch) -> np.ndarray:
        from drn_tf.core.metrics import to_uint8

        batch = np.asarray(batch, np.float32)
        out = []
        for image in batch:
            if self.runner.uint8_io:
                x = to_uint8(image)
            else:
                x = np.ascontiguousarray(image)
            out.append(self.runner._to_float(self.runner.run(x[None]))[0])
        return np.stack(out)


_LOADED: dict = {}


def runtime_model(model, runtime: str | None = "auto", cache_dir=None, progress=None):
    """``model`` (Keras) for ``keras``, else a :class:`LiteRTModel` of its cached TFLite export.

    Raises :class:`drn_tf.models.resolve.ModelError` when the model cannot be
    converted (the message says why), ValueError for an unknown runtime.
    """
    from drn_tf.export.common import ExportError
    from drn_tf.models.resolve import ModelError

    name = resolve_runtime(runtime)
    if name == "keras" or isinstance(model, LiteRTModel):
        return model
    key = (id(model), name, str(cache_dir))
    if key in _LOADED and _LOADED[key][0] is model and _LOADED[key][1].path.is_file():
        return _LOADED[key][1]
    try:
        path = cached_tflite(model, QUANTIZE[name], cache_dir=cache_dir, progress=progress)
    except ExportError as exc:
        raise ModelError(f"runtime {name}: {exc}") from None
    _LOADED.clear()  # one model at a time, like drn_tf.inference.upscale's model cache
    _LOADED[key] = (model, LiteRTModel(path, name))
    return _LOADED[key][1]

# ---------------------------------------------------------------- running TFLite


class TFLiteUpscaler:
    """Runs a DRN TFLite model with the LiteRT interpreter on uint8 images.

    Dynamic-size models: the input is resized to the image
    (``resize_tensor_input`` + ``allocate_tensors``). Fixed-size models
    (``--input-size``): the image is cut into tiles of the model's size that
    overlap by the receptive radius, so every kept output pixel sees all the
    input it depends on and the result equals a whole-image run; images
    smaller than the tile are edge-padded (results near the padded edges then
    differ slightly). This is the procedure an Android app follows.
    """

    def __init__(self, model, num_threads: int | None = None, overlap: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        data = Path(model).read_bytes() if isinstance(model, (str, os.PathLike)) else bytes(model)
        self.metadata = tflite_metadata(data)
        with quiet_stderr():
            self.interpreter = Interpreter(model_content=data, num_threads=num_threads or os.cpu_count())
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        signature = [int(v) for v in self.input["shape_signature"]]
        self.fixed = None if any(v < 0 for v in signature[1:3]) else (signature[1], signature[2])
        self.scale = int(self.metadata.get("scale") or 0)
        self.overlap = int(overlap if overlap is not None else self.metadata.get("receptive_radius", 16))
        self.uint8_io = self.input["dtype"] == np.uint8
        self.interpreter.allocate_tensors()
        self._shape = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One invocation on ``(1, h, w, 3)`` in the model's own input dtype; raw output."""
        if self._shape != batch.shape:
            if self.fixed is None:
                self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
                self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def _to_input(self, lr: np.ndarray) -> np.ndarray:
        if self.uint8_io:
            return lr[None].astype(np.uint8)
        return lr[None].astype(np.float32) / 255.0

    def _to_float(self, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.uint8:
            scale, zero = self.output["quantization"]
            return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return y.astype(np.float32)

    def predict(self, lr: np.ndarray) -> np.ndarray:
        """uint8 ``(h, w, 3)`` -> float32 ``(h*s, w*s, 3)`` in [0, 1]."""
        lr = np.asarray(lr)
        if lr.ndim != 3:
            raise ValueError(f"expected an (h, w, c) image, got shape {lr.shape}")
        if self.fixed is None or lr.shape[:2] == self.fixed:
            return self._to_float(self.run(self._to_input(lr)))[0]
        return self._predict_tiled(lr)

    def _predict_tiled(self, lr: np.ndarray) -> np.ndarray:
        th, tw = self.fixed
        h, w = lr.shape[:2]
        ph, pw = max(h, th), max(w, tw)
        if (ph, pw) != (h, w):
            lr = np.pad(lr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        s = self.scale or None
        out = None
        r = self.overlap
        try:  # the one tiling plan of the project (drn_tf.inference.upscale)
            rows, cols = tile_starts(ph, th, r), tile_starts(pw, tw, r)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        for y0, a0, a1 in rows:
            for x0, b0, b1 in cols:
                sr = self._to_float(self.run(self._to_input(lr[y0 : y0 + th, x0 : x0 + tw])))[0]
                if s is None:
                    s = sr.shape[0] // th
                if out is None:
                    out = np.zeros((ph * s, pw * s, sr.shape[-1]), np.float32)
                out[a0 * s : a1 * s, b0 * s : b1 * s] = sr[(a0 - y0) * s : (a1 - y0) * s, (b0 - x0) * s : (b1 - x0) * s]
        return out[: h * s, : w * s]

    def predict_uint8(self, lr: np.ndarray) -> np.ndarray:
        from drn_tf.core.metrics import to_uint8

        return to_uint8(self.predict(lr))
