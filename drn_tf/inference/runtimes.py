"""The runtimes of ``drn upscale --runtime``, ``drn_tf.upscale(..., runtime=...)``,
``drn beam --runtime`` and ``drn export report --runtimes``: one table,
:data:`RUNTIMES` (name -> builder), and the TFLite cache its LiteRT entries build from.

* ``keras``: the Keras model (TensorFlow, oneDNN on CPUs);
* ``litert``: the float32 TFLite export of the same model in LiteRT
  (XNNPACK); the same outputs within float rounding;
* ``litert-int8``: the full-integer TFLite export (uint8 pixels in and out):
  faster, and a different output (within the int8 loss that
  ``drn export report`` measures);
* ``onnxruntime``: the ONNX export (:mod:`drn_tf.export.onnx`) in ONNX Runtime's CPU provider;
* ``openvino`` / ``openvino-bf16``: the OpenVINO IR on OpenVINO's CPU plugin, computing in float32 or
  (CPUs with AVX512_BF16 / AMX only; refused elsewhere) bfloat16;
* ``auto`` (not an entry: a choice among them): the fastest float runtime on this machine, measured on
  first use and cached (:mod:`drn_tf.inference.autoselect`); the Keras model where a GPU is visible; the
  CPU-flag rule :func:`default_runtime` where nothing can be measured.

Every entry builds a :class:`drn_tf.inference.runtime.Runtime` from a Keras
model, so tiling, channels and outputs are the same whatever runs the network
(:mod:`drn_tf.inference.tiled`). A new runtime is a class implementing that
interface and one entry here (its name, a line of description, the function
that builds it from a Keras model).

The TFLite, ONNX and OpenVINO files are converted on first use and cached under
``<cache>/tflite/``, ``<cache>/onnx/``, ``<cache>/openvino/`` (the user cache folder of
:func:`drn_tf.data.patches.default_cache_dir`; all in ``cache_dir`` when given),
named by a hash of the model's weights and configuration, the export
settings and the versions of drn_tf, TensorFlow and the converter (LiteRT, tf2onnx, onnx, OpenVINO), and
written atomically, so a second run loads the file and a changed model gets a new one. The builders take
the Keras model (the key hashes its weights), so TensorFlow is loaded even when the file is cached; the
runtime classes themselves open an exported file without TensorFlow. A runtime whose package is missing
is refused with the ``pip install`` line that adds it.

This module imports no framework and no numpy at load time (``drn upscale
--help`` reads the names): the builders import what they run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from drn_tf.inference import autoselect


@dataclass(frozen=True)
class RuntimeEntry:
    """A row of :data:`RUNTIMES`: ``build(model, cache_dir=None, progress=None)`` -> a
    :class:`~drn_tf.inference.runtime.Runtime` running the Keras ``model`` (``cache_dir``: where
    converted files are kept; ``progress(message)``: told about a slow first conversion)."""

    description: str
    build: Callable
    export: str = ""  # the `drn export` command that writes the file it runs


def _keras(model, cache_dir=None, progress=None, device=None):
    from drn_tf.inference.devices import check_device
    from drn_tf.inference.runtime import KerasRuntime

    return KerasRuntime(model, device=check_device(device))


def _keras_bf16(model, cache_dir=None, progress=None, device=None):
    from drn_tf.inference.bf16 import bf16_model, check_bf16_cpu
    from drn_tf.inference.devices import check_device
    from drn_tf.inference.runtime import KerasRuntime

    check_bf16_cpu()
    return KerasRuntime(bf16_model(model), device=check_device(device), name="keras-bf16")


def _litert(quantize: str) -> Callable:
    def build(model, cache_dir=None, progress=None):
        from drn_tf.inference.litert import LiteRTRuntime

        return LiteRTRuntime(cached_tflite(model, quantize, cache_dir=cache_dir, progress=progress))

    return build


def _onnxruntime(model, cache_dir=None, progress=None):
    from drn_tf.export.onnx import require
    from drn_tf.inference.onnx_runtime import OnnxRuntime

    require("onnxruntime", "onnx")  # before converting anything
    return OnnxRuntime(cached_onnx(model, cache_dir=cache_dir, progress=progress))


def _openvino(precision: str) -> Callable:
    def build(model, cache_dir=None, progress=None):
        from drn_tf.export.onnx import require
        from drn_tf.inference.openvino_runtime import OpenVINORuntime, check_bf16

        if precision == "bf16":
            check_bf16()  # before converting anything
        require("openvino", "openvino")
        return OpenVINORuntime(cached_openvino(model, cache_dir=cache_dir, progress=progress), precision)

    return build


RUNTIMES: dict[str, RuntimeEntry] = {
    "keras": RuntimeEntry("the Keras model (TensorFlow, oneDNN): the reference", _keras,
                          "model.save (a .keras file)"),
    "keras-bf16": RuntimeEntry("the Keras model under the mixed_bfloat16 policy (CPUs with AVX512_BF16 or AMX "
                               "only): a slightly different output", _keras_bf16, "model.save (a .keras file)"),
    "litert": RuntimeEntry("the float32 TFLite export in LiteRT (XNNPACK): the same output within float rounding",
                           _litert("float32"), "drn export tflite"),
    "litert-int8": RuntimeEntry("the full-integer TFLite export in LiteRT (uint8 pixels in and out): faster, a "
                                "slightly different output", _litert("int8"), "drn export tflite --quantize int8"),
    "onnxruntime": RuntimeEntry("the ONNX export in ONNX Runtime (CPU): the same output within float rounding "
                                '(pip install "drn-tf[onnx]")', _onnxruntime, "drn export onnx"),
    "openvino": RuntimeEntry("the OpenVINO IR on OpenVINO's CPU plugin, float32: the same output within float "
                             'rounding (pip install "drn-tf[openvino]")', _openvino("f32"), "drn export openvino"),
    "openvino-bf16": RuntimeEntry("the OpenVINO IR computed in bfloat16 (CPUs with AVX512_BF16 or AMX only): "
                                  "faster, a slightly different output", _openvino("bf16"), "drn export openvino"),
}
AUTO = "auto"
KERAS_RUNTIMES = ("keras", "keras-bf16")  # the entries that run the Keras model itself (--device applies)
AUTO_RULE = autoselect.AUTO_RULE  # what `auto` picks where nothing is measured (the CPU flags)


def runtime_names() -> tuple[str, ...]:
    """What a ``--runtime`` option accepts: ``auto`` and every entry of :data:`RUNTIMES`."""
    return (AUTO, *RUNTIMES)


def runtimes_help() -> str:
    """One line per entry of :data:`RUNTIMES` for a ``--runtime`` option's help."""
    return "; ".join(f"{name}: {entry.description}" for name, entry in RUNTIMES.items())


def default_runtime(flags=None) -> str:
    """The faster float runtime on this CPU by the CPU-flag rule (:data:`AUTO_RULE`): ``auto`` where nothing
    can be measured."""
    return autoselect.rule_runtime(flags)


def resolve_runtime(name: str | None, *, precision: str | None = None, device: str | None = None,
                    tag: str | None = None, measure=None, progress=None) -> str:
    """The entry of :data:`RUNTIMES` that runs ``name`` in ``precision`` (``float32`` | ``bf16``,
    :func:`drn_tf.inference.bf16.runtime_for_precision`) on ``device`` (``cpu`` | ``gpu[:N]``, Keras only).

    ``auto``/None: the Keras model on a GPU (``device`` gpu, or a GPU visible where ``device`` is None:
    :func:`drn_tf.inference.devices.gpu_visible`), else :func:`drn_tf.inference.autoselect.choose` for the
    model ``tag`` (default: the default preset's) with ``measure(names)`` (None: the cached choice, else
    the CPU-flag rule). ValueError (one line) for an unknown name or precision, a malformed device, bf16 on a
    CPU without it, a GPU for a runtime that is not Keras. Imports no framework unless a GPU driver is present.
    """
    from drn_tf.inference import bf16, devices

    name = name or AUTO
    if name not in runtime_names():
        raise ValueError(f"runtime must be one of {', '.join(runtime_names())}; got {name!r}")
    precision = precision or "float32"
    if precision not in bf16.PRECISIONS:
        raise bf16.PrecisionError(f"precision must be one of {', '.join(bf16.PRECISIONS)}; got {precision!r}")
    if precision == "bf16" or name.endswith("-bf16"):
        bf16.check_bf16_cpu()
    devices.parse_device(device)
    if name == AUTO:
        if devices.is_gpu(device) or (device is None and devices.gpu_visible()):
            name = "keras"
        else:
            return autoselect.choose(tag or autoselect.model_tag(), measure, precision=precision,
                                     progress=progress).runtime
    elif devices.is_gpu(device) and bf16.runtime_for_precision(name, precision) not in KERAS_RUNTIMES:
        raise devices.DeviceError(f"--device {device} runs the Keras model (--runtime keras or auto); "
                                  f"{name} runs on the CPU")
    return bf16.runtime_for_precision(name, precision)


_LOADED: dict = {}  # the last runtime built from a Keras model by a converting entry: (model, runtime)


def auto_measure(get_model, cache_dir=None, progress=None) -> Callable:
    """``measure(names)`` for :func:`drn_tf.inference.autoselect.choose`: each runtime built from the Keras
    model ``get_model()`` (called only if something is measured) and timed
    (:func:`drn_tf.inference.autoselect.measure_runtimes`)."""

    def measure(names):
        model = get_model()
        return autoselect.measure_runtimes(
            lambda n: runtime_model(model, n, cache_dir=cache_dir, progress=progress), names)

    return measure


def runtime_model(model, runtime: str | None = AUTO, cache_dir=None, progress=None, *, precision=None, device=None):
    """The :class:`~drn_tf.inference.runtime.Runtime` named ``runtime`` (:data:`RUNTIMES`, or ``auto``)
    running the Keras ``model`` in ``precision`` on ``device`` (:func:`resolve_runtime`); a runtime passed as
    ``model`` is returned as it is.

    Raises :class:`drn_tf.models.resolve.ModelError` when the model cannot be
    converted or run as asked (the message says why), ValueError for an unknown runtime.
    """
    from drn_tf.export.common import ExportError
    from drn_tf.inference.runtime import Runtime
    from drn_tf.models.resolve import ModelError

    if isinstance(model, Runtime):
        resolve_runtime(runtime)  # an unknown name is still an error
        return model
    try:
        name = resolve_runtime(runtime, precision=precision, device=device,
                               tag=autoselect.model_tag(model) if (runtime or AUTO) == AUTO else None,
                               measure=auto_measure(lambda: model, cache_dir, progress), progress=progress)
        if name in KERAS_RUNTIMES:
            return RUNTIMES[name].build(model, device=device)
    except ValueError as exc:  # bf16 or the device refused: one line
        if isinstance(exc, ModelError) or str(exc).startswith("runtime must be"):
            raise
        raise ModelError(str(exc)) from None
    key = (id(model), name, str(cache_dir))
    if key in _LOADED and _LOADED[key][0] is model and _LOADED[key][1].path.is_file():
        return _LOADED[key][1]
    try:
        built = RUNTIMES[name].build(model, cache_dir=cache_dir, progress=progress)
    except ExportError as exc:
        raise ModelError(f"runtime {name}: {exc}") from None
    _LOADED.clear()  # one model at a time, like drn_tf.models.resolve's model cache
    _LOADED[key] = (model, built)
    return built


def load_runtime(model=None, preset: str | None = None, scale: int | None = None, runtime: str | None = AUTO,
                 cache_dir=None, progress=None, *, precision=None, device=None):
    """The runtime of ``drn_tf.upscale``'s arguments: a :class:`~drn_tf.inference.runtime.Runtime` passed as
    ``model`` as it is (its scale checked against ``scale``), else the model
    :func:`drn_tf.models.resolve.resolve_model` picks in the runtime named ``runtime`` (``auto``: chosen
    before the model loads, :func:`resolve_runtime`), ``precision`` and ``device``."""
    from drn_tf.inference.runtime import Runtime, check_runtime_scale
    from drn_tf.models.resolve import ModelError, resolve_model

    if isinstance(model, Runtime):
        resolve_runtime(runtime)  # an unknown name is still an error
        return check_runtime_scale(model, scale)
    try:
        runtime = resolve_runtime(runtime, precision=precision, device=device,
                                  tag=autoselect.model_tag(model, preset, scale),
                                  measure=auto_measure(lambda: resolve_model(model, preset, scale), cache_dir,
                                                       progress), progress=progress)
    except ValueError as exc:
        if str(exc).startswith("runtime must be"):
            raise
        raise ModelError(str(exc)) from None
    return runtime_model(resolve_model(model, preset, scale), runtime, cache_dir=cache_dir, progress=progress,
                         device=device)


def __getattr__(name):
    if name in ("LiteRTRuntime", "TFLiteUpscaler"):  # the LiteRT runtime class, where it was found before
        from drn_tf.inference import litert

        return getattr(litert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------- the TFLite cache


def tflite_cache_dir() -> Path:
    from drn_tf.data.patches import default_cache_dir

    return default_cache_dir() / "tflite"


def _versions(packages=("tensorflow", "ai-edge-litert")) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from drn_tf.core.version import VERSION

    out = [f"drn_tf={VERSION}"]
    for pkg in packages:
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=?")
    return ";".join(out)


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


def tflite_cache_key(model, quantize: str) -> str:
    """Cache key of the TFLite export of ``model``: weights, export settings, versions."""
    from drn_tf.export.common import default_data_dir
    from drn_tf.export.int8 import CALIBRATION_COUNT, CALIBRATION_PATCH, INT8_RECIPE

    settings = {"quantize": quantize, "format": "dynamic-size, builtin ops", "metadata": "drn_tf, TFLITE_METADATA"}
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

    def make():
        from drn_tf.export.tflite import convert_tflite

        ranges = bundled_int8_ranges(model) if quantize == "int8" else None
        return {".tflite": convert_tflite(model, quantize, int8_ranges=ranges)}

    folder = Path(cache_dir) if cache_dir is not None else tflite_cache_dir()
    return cached_export(model, folder, f"{quantize}-{tflite_cache_key(model, quantize)}", ".tflite", make,
                         f"TFLite {quantize}", progress)


def export_cache_key(model, settings: dict, packages=()) -> str:
    """Cache key of an export of ``model`` (as :func:`tflite_cache_key`): weights, ``settings``, the versions
    of drn_tf, TensorFlow and ``packages``."""
    raw = json.dumps([weights_digest(model), settings, _versions(("tensorflow", *packages))], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def cached_onnx(model, cache_dir=None, progress=None) -> Path:
    """Path of the cached ONNX export of ``model`` (dynamic size, :func:`drn_tf.export.onnx.convert_onnx`)."""
    from drn_tf.export import onnx as export_onnx

    settings = {"format": "onnx, dynamic-size", "opset": export_onnx.ONNX_OPSET}
    folder = Path(cache_dir) if cache_dir is not None else default_cache_root() / "onnx"
    return cached_export(model, folder, export_cache_key(model, settings, ("tf2onnx", "onnx")), ".onnx",
                         lambda: {".onnx": export_onnx.convert_onnx(model)}, "ONNX", progress)


def cached_openvino(model, cache_dir=None, progress=None) -> Path:
    """Path of the cached OpenVINO IR (``.xml``; its ``.bin`` beside it) of ``model``, float32 weights."""
    import tempfile

    from drn_tf.export import onnx as export_onnx

    settings = {"format": "openvino IR from onnx, dynamic-size, fp32 weights", "opset": export_onnx.ONNX_OPSET}

    def make():
        with tempfile.TemporaryDirectory(prefix="drn-openvino-") as tmp:
            xml = export_onnx.convert_openvino(model, tmp)
            return {".bin": xml.with_suffix(".bin").read_bytes(), ".xml": xml.read_bytes()}

    folder = Path(cache_dir) if cache_dir is not None else default_cache_root() / "openvino"
    key = export_cache_key(model, settings, ("tf2onnx", "onnx", "openvino"))
    return cached_export(model, folder, key, ".xml", make, "OpenVINO IR", progress)


def default_cache_root() -> Path:
    from drn_tf.data.patches import default_cache_dir

    return default_cache_dir()


def cached_export(model, folder: Path, tag: str, suffix: str, make, what: str, progress=None) -> Path:
    """The file ``folder/<model name>-<tag><suffix>``, made on a miss by ``make()`` -> ``{suffix: bytes}`` (the
    main ``suffix`` last, so it exists only once its companions do), each written atomically under a per-file lock.
    Where ``folder`` cannot be written the files go to a temporary folder removed at exit (a warning says so)."""
    from drn_tf.core.utils import write_atomic

    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in (getattr(model, "name", None) or "model"))
    path = folder / f"{name}-{tag}{suffix}"
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
