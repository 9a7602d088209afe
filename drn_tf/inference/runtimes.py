"""The runtimes of ``drn upscale --runtime``, ``drn_tf.upscale(..., runtime=...)``,
``drn beam --runtime`` and ``drn export report --runtimes``: one table,
:data:`RUNTIMES` (name -> builder), and the TFLite cache its LiteRT entries build from.

* ``keras``: the Keras model (TensorFlow, oneDNN on CPUs);
* ``litert``: the float32 TFLite export of the same model in LiteRT
  (XNNPACK); the same outputs within float rounding;
* ``litert-int8``: the full-integer TFLite export (uint8 pixels in and out):
  faster, and a different output (within the int8 loss that
  ``drn export report`` measures); the blocks where its activations clipped
  are rerun by the float32 file (:mod:`drn_tf.inference.saturation`);
* ``onnxruntime``: the ONNX export (:mod:`drn_tf.export.onnx`) in ONNX Runtime's CPU provider;
* ``openvino`` / ``openvino-bf16``: the OpenVINO IR on OpenVINO's CPU plugin, computing in float32 or
  (CPUs with AVX512_BF16 / AMX only; refused elsewhere) bfloat16;
* ``keras-bf16``: the Keras model under the ``mixed_bfloat16`` policy (CPUs with AVX512_BF16 / AMX only;
  :mod:`drn_tf.inference.bf16`), what ``--precision bf16`` runs with ``--runtime keras``;
* ``auto`` (not an entry: a choice among them): the fastest float runtime on this machine, measured on
  first use and cached (:mod:`drn_tf.inference.autoselect`); the Keras model where a GPU is visible; the
  CPU-flag rule :func:`default_runtime` where nothing can be measured.

Every entry builds a :class:`drn_tf.inference.runtime.Runtime` from a Keras
model, so tiling, channels and outputs are the same whatever runs the network
(:mod:`drn_tf.inference.tiled`). A new runtime is a class implementing that
interface and one entry here (its name, a line of description, the function
that builds it from a Keras model).

The TFLite, ONNX and OpenVINO files come from :mod:`drn_tf.inference.export_cache`: shipped with the
package for the bundled presets (``assets/tflite/``), else converted on first use and cached under
``<cache>/tflite/``, ``<cache>/onnx/``, ``<cache>/openvino/`` (all in ``cache_dir`` when given), keyed by the
``.keras`` file's bytes (a model in memory: its weights and configuration), the export settings and the
versions of drn_tf, TensorFlow and the converter, so a second run loads the file and a changed model gets
a new one. A preset or a ``.keras`` path in a runtime other than ``keras`` (:func:`load_runtime`) opens that
file without importing TensorFlow or Keras; they load only to convert a file once. A runtime whose package
is missing is refused with the ``pip install`` line that adds it.

This module imports no framework and no numpy at load time (``drn upscale
--help`` reads the names): the builders import what they run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from drn_tf.inference import autoselect
from drn_tf.inference.export_cache import (  # noqa: F401  (also where they were found before)
    INT8_MANIFEST,
    ModelFile,
    bundled_int8_ranges,
    cached_export,
    cached_onnx,
    cached_openvino,
    cached_tflite,
    default_cache_root,
    export_cache_key,
    keras_model,
    remove_scratch,
    tflite_cache_dir,
    tflite_cache_key,
    weights_digest,
)
from drn_tf.inference.export_cache import versions as _versions  # noqa: F401


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

    check_bf16_cpu(what="keras-bf16")
    return KerasRuntime(bf16_model(model), device=check_device(device), name="keras-bf16")


def _litert(quantize: str) -> Callable:
    def build(model, cache_dir=None, progress=None):
        from drn_tf.inference.litert import LiteRTRuntime

        path = cached_tflite(model, quantize, cache_dir=cache_dir, progress=progress)
        if quantize != "int8":
            return LiteRTRuntime(path)
        # the regions where int8 clipped run in the float32 file (opened on first need)
        return LiteRTRuntime(path, fallback=lambda: LiteRTRuntime(
            cached_tflite(model, "float32", cache_dir=cache_dir, progress=progress)))

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
    "litert": RuntimeEntry("the float32 TFLite export in LiteRT (XNNPACK): the same output within float rounding",
                           _litert("float32"), "drn export tflite"),
    "litert-int8": RuntimeEntry("the full-integer TFLite export in LiteRT (uint8 pixels in and out): faster, a "
                                "slightly different output; regions where its activations clip (stripes, text, "
                                "grids) run in float32", _litert("int8"), "drn export tflite --quantize int8"),
    "onnxruntime": RuntimeEntry("the ONNX export in ONNX Runtime (CPU): the same output within float rounding "
                                '(pip install "drn-tf[onnx]")', _onnxruntime, "drn export onnx"),
    "openvino": RuntimeEntry("the OpenVINO IR on OpenVINO's CPU plugin, float32: the same output within float "
                             'rounding (pip install "drn-tf[openvino]")', _openvino("f32"), "drn export openvino"),
    "openvino-bf16": RuntimeEntry("the OpenVINO IR computed in bfloat16 (CPUs with AVX512_BF16 or AMX only): "
                                  "faster, a slightly different output", _openvino("bf16"), "drn export openvino"),
    "keras-bf16": RuntimeEntry("the Keras model under the mixed_bfloat16 policy (CPUs with AVX512_BF16 or AMX "
                               "only): a slightly different output", _keras_bf16, "model.save (a .keras file)"),
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
        bf16.check_bf16_cpu(what=name if name.endswith("-bf16") else "--precision bf16")
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
            return RUNTIMES[name].build(keras_model(model), device=device)
    except ValueError as exc:  # bf16 or the device refused: one line
        if isinstance(exc, ModelError) or str(exc).startswith("runtime must be"):
            raise
        raise ModelError(str(exc)) from None
    same_file = isinstance(model, ModelFile)  # a .keras file: the same path, size and time is the same model
    key = (model.identity if same_file else id(model), name, str(cache_dir))
    if key in _LOADED and (same_file or _LOADED[key][0] is model) and _LOADED[key][1].path.is_file():
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
    from drn_tf.models.resolve import ModelError, locate, resolve_model

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
    found = locate(model, preset, scale) if runtime not in KERAS_RUNTIMES else None
    if found is not None:  # a preset or a .keras file in a runtime that is not Keras: its export, by the file's bytes
        source = ModelFile(found.path, found.name if found.source == "bundled" else None)
        built = runtime_model(source, runtime, cache_dir=cache_dir, progress=progress)
        return check_runtime_scale(built, scale, found.name if found.source == "file" else f"preset {found.name}")
    return runtime_model(resolve_model(model, preset, scale), runtime, cache_dir=cache_dir, progress=progress,
                         device=device)


def __getattr__(name):
    if name in ("LiteRTRuntime", "TFLiteUpscaler"):  # the LiteRT runtime class, where it was found before
        from drn_tf.inference import litert

        return getattr(litert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
