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
``<cache>/tflite/`` (the user cache folder of :func:`drn_tf.data.default_cache_dir`),
named by a hash of the model's weights and configuration, the export
settings and the TensorFlow / LiteRT / drn_tf versions, and written
atomically, so a second run loads the file and a changed model gets a new one.

A :class:`LiteRTModel` stands in for the Keras model in
:mod:`drn_tf.inference` (``predict_on_batch``, ``get_config()["scale"]``,
``receptive_radius``), so the TFLite runtimes use the same tiling plan
(:func:`drn_tf.inference.tile_starts`): equal-shape tiles overlapping by the
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

RUNTIMES = ("auto", "keras", "litert", "litert-int8")
QUANTIZE = {"litert": "float32", "litert-int8": "int8"}

# What `auto` picks, from the CPU flags, measured 256x256 x2 with drn_x2 (keras `predict_on_batch` against
# LiteRT float32 `invoke`, interleaved): AVX-512 (AMD EPYC, avx512f + avx512_vnni, 2 cores): Keras 720 ms,
# LiteRT 824 ms (assets/benchmark.md) -> keras; AVX2 only (same machine kind, no AVX-512): Keras 1,398 ms,
# LiteRT 1,096 ms (issue 17) -> litert. oneDNN's AVX-512 convolutions are what put Keras ahead.
AUTO_RULE = "keras on CPUs with AVX-512 (avx512f), litert otherwise"


def default_runtime(flags=None) -> str:
    """The faster float runtime on this CPU (see :data:`AUTO_RULE`)."""
    from drn_tf.utils import cpu_flags

    flags = cpu_flags() if flags is None else flags
    return "keras" if "avx512f" in flags else "litert"


def resolve_runtime(name: str | None) -> str:
    """``auto``/None -> :func:`default_runtime`; other names checked against :data:`RUNTIMES`."""
    name = name or "auto"
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}; got {name!r}")
    return default_runtime() if name == "auto" else name


def tflite_cache_dir() -> Path:
    from drn_tf.data import default_cache_dir

    return default_cache_dir() / "tflite"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import drn_tf

    out = [f"drn_tf={drn_tf.__version__}"]
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
    from drn_tf import export as E

    settings = {"quantize": quantize, "format": "dynamic-size, builtin ops"}
    if quantize == "int8":
        train = E.default_data_dir() / "train"
        settings.update(recipe=E.INT8_RECIPE, count=E.CALIBRATION_COUNT, patch=E.CALIBRATION_PATCH,
                        data=str(train), calibration_files=_listing(train))
    raw = json.dumps([weights_digest(model), settings, _versions()], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _listing(folder: Path) -> str:
    """Digest of the image files under ``folder`` (relative path, size, modification time): new or
    changed calibration images make a new int8 file."""
    from drn_tf.data import list_images

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
    """Path of the cached TFLite export of ``model`` (``float32`` or ``int8``), converting it on a miss."""
    from drn_tf import export as E
    from drn_tf.utils import write_atomic

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
        flat = E.convert_tflite(model, quantize)
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
    """A TFLite DRN model in LiteRT, standing in for the Keras model in :mod:`drn_tf.inference`.

    ``predict_on_batch`` takes float32 ``(n, h, w, 3)`` in [0, 1] and
    returns float32 ``(n, h*s, w*s, 3)`` in [0, 1]. An int8 model gets the
    input rounded to 8-bit pixels (exact for 8-bit images) and returns its
    pixels / 255.
    """

    def __init__(self, path, runtime: str, num_threads: int | None = None):
        from drn_tf.export import TFLiteUpscaler

        self.path = Path(path)
        self.runtime = runtime
        self.runner = TFLiteUpscaler(self.path, num_threads=num_threads)
        self.scale = self.runner.scale
        self.receptive_radius = int(self.runner.metadata["receptive_radius"])
        self.name = self.path.stem

    def get_config(self) -> dict:
        return {"scale": self.scale}

    def predict_on_batch(self, batch) -> np.ndarray:
        from drn_tf.metrics import to_uint8

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

    Raises :class:`drn_tf.inference.ModelError` when the model cannot be
    converted (the message says why), ValueError for an unknown runtime.
    """
    from drn_tf.export import ExportError
    from drn_tf.inference import ModelError

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
    _LOADED.clear()  # one model at a time, like drn_tf.inference's model cache
    _LOADED[key] = (model, LiteRTModel(path, name))
    return _LOADED[key][1]


# ---------------------------------------------------------------- the runtime table


def runtime_report(model, description: str, data_dir=None, *, sets=("Set5", "Set14"), latency_size=(256, 256),
                   runs: int = 6, warmup: int = 1, cache_dir=None, progress=None) -> tuple[str, list[dict]]:
    """Markdown table: PSNR on ``sets`` and speed of every runtime, with the CPU it ran on.

    PSNR: ``drn_tf.upscale(lr, model=..., runtime=...)`` (the whole main-job
    path) on each set by the project's protocol. Speed: one
    ``latency_size`` input through each runtime's ``predict_on_batch``
    (Keras: the model's; LiteRT: ``invoke`` plus the uint8/float
    conversions), the runtimes timed in turn round after round
    (:func:`drn_tf.export.interleaved_latency`), median and best.
    """
    import platform
    import statistics
    import time

    from drn_tf import export as E
    from drn_tf.inference import model_scale, upscale
    from drn_tf.metrics import psnr_y
    from drn_tf.utils import cpu_flags, cpu_model

    say = progress or (lambda msg: None)
    data_dir = Path(data_dir) if data_dir else E.default_data_dir()
    scale = model_scale(model)
    pairs = {}
    for name in sets:
        folder = data_dir / "benchmark" / name
        if not folder.is_dir():
            raise E.ExportError(f"{folder} does not exist (pass --data with benchmark/{name})")
        pairs[name] = E._set5_pairs(data_dir, scale, set_name=name)[1]
    names = [n for n in RUNTIMES if n != "auto"]
    models = {}
    for name in names:
        say(f"{name}: preparing ...")
        models[name] = runtime_model(model, name, cache_dir=cache_dir, progress=say)
    rows = []
    for name in names:
        row = {"runtime": name}
        for set_name, set_pairs in pairs.items():
            row[set_name] = float(np.mean([psnr_y(upscale(lr, model=models[name]), hr, scale)
                                           for _, lr, hr in set_pairs]))
        say(f"{name}: " + ", ".join(f"{k} {row[k]:.3f} dB" for k in pairs))
        rows.append(row)
    lh, lw = E.parse_size(latency_size)
    batch = np.random.default_rng(0).random((1, lh, lw, 3), dtype=np.float32)
    say(f"latency: {len(names)} runtimes x ({warmup} warm-up + {runs} timed runs), interleaved ...")
    fns = {name: (lambda m=models[name]: m.predict_on_batch(batch)) for name in names}
    times = E.interleaved_latency(fns, runs, warmup, all_runs=True)
    keras_median = statistics.median(times["keras"])
    keras_best = min(times["keras"])
    for row in rows:
        t = times[row["runtime"]]
        row["median_ms"], row["best_ms"] = 1e3 * statistics.median(t), 1e3 * min(t)
        row["speedup"] = keras_median / statistics.median(t)
        row["speedup_best"] = keras_best / min(t)
    flags = cpu_flags()
    try:
        load = "; load average {:.1f}".format(os.getloadavg()[0])
    except OSError:
        load = ""
    lines = [
        f"Runtimes of {description}, x{scale}: `drn export report --runtimes`, {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, flags {', '.join(flags) or 'none of note'}; "
        f"{platform.system()} {platform.release()}{load}. `auto` picks **{default_runtime(flags)}** here "
        f"({AUTO_RULE}). Versions: {_versions()}.",
        "",
        f"PSNR: `drn_tf.upscale(..., runtime=...)` on {', '.join(pairs)} (Y channel, {scale} pixels shaved). "
        f"Speed: one {lh}x{lw} input, median (best) of {runs} runs after {warmup} warm-up, the runtimes "
        "timed in turn round after round; speed-up against keras in the same run.",
        "",
        "| runtime | " + " | ".join(f"{k} PSNR (dB)" for k in pairs) + " | ms (median) | ms (best) | x keras (median) | x keras (best) |",
        "|---|" + "---:|" * (len(pairs) + 4),
    ]
    for row in rows:
        lines.append(
            f"| {row['runtime']} | " + " | ".join(f"{row[k]:.3f}" for k in pairs)
            + f" | {row['median_ms']:.0f} | {row['best_ms']:.0f} | {row['speedup']:.2f} | {row['speedup_best']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines), rows
