"""``drn benchmark``: latency, throughput and achieved GFLOP/s against this
machine's measured fp32 matrix-multiply peak.

What it measures, in one run:

* **peak**: a large ``tf.linalg.matmul`` (``n x n`` float32, ``2 n^3`` FLOPs),
  timed *interleaved* with the model runs (one matmul per round), so the peak
  and the model figures see the same machine load;
* **inference** of one ``1 x H x W x 3`` float32 input for every variant:
  Keras eager (op by op), Keras XLA (``jit_compile=True``), and through the
  runtime interface (:meth:`drn_tf.inference.runtime.Runtime.run_batch`, its
  own pixel conversions included) the Keras model (``predict_on_batch``, a
  ``tf.function`` graph), the SavedModel and the TFLite files (float32,
  float16, dynamic, int8), written by the export table
  (:data:`drn_tf.export.formats.FORMATS`, what ``drn export`` ships) and run
  by their runtimes (SavedModel: TensorFlow; TFLite: LiteRT with
  ``num_threads`` = cores; int8 with the activation ranges ``drn export tflite --quantize int8``
  takes, a bundled preset's shipped ones, its row says which). Per variant: median
  latency after warm-up, output megapixels/s, achieved GFLOP/s
  (``2 x MACs / latency``, MACs from :mod:`drn_tf.models.analysis`) and its share
  of the peak;
* **training** (the training recipe's optimizer, :func:`drn_tf.train.recipe.build_optimizer`,
  and loss; synthetic in-memory patches of the training configuration's size) on
  TensorFlow with and without XLA, in mixed_bfloat16, and from the ``tf.data``
  pipeline; and on the **JAX** backend in a subprocess (``KERAS_BACKEND=jax``, no
  TensorFlow imported there), against the engine's JAX float32 matmul peak
  (:func:`drn_tf.train.summary.jax_matmul_peak_tflops`) measured in that subprocess. Patches/s and GFLOP/s
  with training FLOPs taken as ``3 x`` the forward pass (backward = 2 x forward);
* a **profile** (``tf.profiler``) of one graph-mode inference and one training
  step: time per op type, and the GFLOP/s of the convolutions alone.

Every timed variant runs round-robin with the others of its kind and the
matmuls (after its own warm-up), so a load change on a shared machine hits all
of them alike; the figures are medians, with the fastest runs beside them.

The machine, its peaks and the interleaved timing are in :mod:`drn_tf.bench.machine`,
the profile in :mod:`drn_tf.bench.profile`, the markdown in :mod:`drn_tf.bench.markdown`.
The variants are one registry, :data:`VARIANTS` (name -> :class:`Variant`);
``run_benchmark(registry=...)`` takes an extended one (``tools/benchmark_diagnostics.py``
adds the diagnostics of past rounds). The report is factual: measurements, no
targets (``tools/benchmark_notes.py`` puts a round's goals and notes on a result JSON).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from drn_tf.bench.machine import (
    cpu_count,
    int8_matmul_fn,
    interleaved,
    load_average,
    machine_info,
    matmul_fns,
    quiet,
)
from drn_tf.bench.markdown import to_markdown
from drn_tf.bench.profile import is_conv_op, profile_ops, summarise_profile


@dataclass
class Settings:
    size: tuple[int, int] = (256, 256)
    runs: int = 5
    warmup: int = 2
    matmul_n: int = 4096
    int8_matmul_n: int = 2048
    train_batch: int = 16
    train_patch: int = 48
    train_runs: int = 5
    train_warmup: int = 2
    calibration_count: int = 24
    profile: bool = True

    @classmethod
    def quick(cls, size=(32, 32)) -> "Settings":
        return cls(
            size=size, runs=3, warmup=1, matmul_n=1024, int8_matmul_n=512, train_batch=4, train_patch=24, train_runs=2,
            train_warmup=1, calibration_count=2, profile=True,
        )


@dataclass
class Row:
    name: str
    description: str
    kind: str  # "inference" | "training"
    available: bool = True
    reason: str = ""
    latency_ms: float | None = None  # inference: one image; training: one step
    samples_ms: list = field(default_factory=list)
    output_mp_per_s: float | None = None
    patches_per_s: float | None = None
    gflops: float | None = None
    pct_peak: float | None = None
    best_ms: float | None = None  # fastest run: what the machine does when no other process interferes
    gflops_best: float | None = None
    pct_peak_best: float | None = None  # against the fastest matmul run
    # the peak pct_peak is taken against when it is not the run's TensorFlow matmul (result["peak"]):
    # a variant measured in another process has its own, measured there (median, fastest run)
    peak_gflops: float | None = None
    peak_gflops_best: float | None = None
    note: str = ""


# ---------------------------------------------------------------- model


def load_benchmark_model(preset: str = "drn_x2", model_path=None):
    """The :class:`drn_tf.models.resolve.Resolved` model: the model file, else the preset's bundled
    trained model, else a freshly initialised one (``trained=False``: latency does not depend on the weights)."""
    from drn_tf.models.resolve import resolve

    return resolve(model_path or None, preset, allow_untrained=True)


# ---------------------------------------------------------------- variants


@dataclass
class Bench:
    """What the variants' builders share: the model, its DRN config, the settings, a scratch folder
    and the inputs (one ``1 x H x W x 3`` image; a training batch)."""

    model: object
    config: dict
    settings: Settings
    workdir: Path

    @cached_property
    def x_uint8(self) -> np.ndarray:
        h, w = self.settings.size
        return np.random.default_rng(0).integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)

    @cached_property
    def x_float(self) -> np.ndarray:
        return self.x_uint8.astype(np.float32) / 255.0

    @cached_property
    def x_tf(self):
        import tensorflow as tf

        return tf.constant(self.x_float)

    @cached_property
    def train_xy(self):
        import tensorflow as tf

        return tuple(tf.constant(a) for a in train_batch(int(self.config["scale"]), self.settings))


@dataclass(frozen=True)
class Variant:
    """One row of the report. ``build(bench, row)`` returns the callable that is timed (one inference or one
    training step, run to completion), round-robin with the other variants of its ``kind`` and the matmuls;
    it may set ``row.note``. A variant with ``measure(bench, row)`` instead times itself, alone, and returns
    ``(seconds per step, seconds per matmul of its own peak)``: one that runs in another process."""

    description: str
    kind: str  # "inference" | "training"
    build: Callable | None = None
    measure: Callable | None = None


def _keras_eager(b: Bench, row: Row):
    return lambda: np.asarray(b.model(b.x_tf, training=False))


def _keras_xla(b: Bench, row: Row):
    import tensorflow as tf

    fn = tf.function(lambda x: b.model(x, training=False), jit_compile=True)
    fn(b.x_tf)  # compile now, so a failure marks the variant unavailable
    return lambda: fn(b.x_tf).numpy()


def open_written(path, model, threads: int | None = None):
    """What :data:`drn_tf.export.formats.FORMATS` wrote, as the runtime that runs it
    (:class:`drn_tf.inference.runtime.Runtime`): the Keras ``model`` itself for its ``.keras`` file,
    LiteRT (``threads``, default: the cores) for a ``.tflite`` file, ONNX Runtime for a ``.onnx`` file, OpenVINO
    (float32) for an IR's ``.xml``, TensorFlow for a SavedModel folder."""
    path = Path(path)
    if path.suffix == ".keras":
        from drn_tf.inference.runtime import KerasRuntime

        return KerasRuntime(model)
    if path.suffix == ".tflite":
        from drn_tf.inference.litert import LiteRTRuntime

        return LiteRTRuntime(path, num_threads=threads or cpu_count())
    if path.suffix == ".onnx":
        from drn_tf.inference.onnx_runtime import OnnxRuntime

        return OnnxRuntime(path, num_threads=threads or cpu_count())
    if path.suffix == ".xml":
        from drn_tf.inference.openvino_runtime import OpenVINORuntime

        return OpenVINORuntime(path, "f32", num_threads=threads or cpu_count())
    from drn_tf.inference.savedmodel import SavedModelRuntime

    return SavedModelRuntime(path)


def size_bytes(path) -> int:
    """Bytes of a file (an OpenVINO IR's ``.xml`` with its ``.bin``), or of every file under a folder."""
    path = Path(path)
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def exported_timer(b: Bench, row: Row, model, form: str, **options):
    """The timed ``run_batch`` of ``model`` written in ``form`` (:data:`drn_tf.export.formats.FORMATS`; ``options``
    go to its writer) and opened in its runtime (:func:`open_written`); notes the size in ``row``."""
    from drn_tf.export.formats import FORMATS

    folder = b.workdir / row.name
    folder.mkdir(parents=True, exist_ok=True)
    with quiet():
        path = FORMATS[form].write(model, folder, workdir=b.workdir, **options)
        runtime = open_written(path, model)
    runtime.run_batch(b.x_float)
    row.note = f"{size_bytes(path) / 1e6:.2f} MB" + (f", {cpu_count()} threads" if path.suffix == ".tflite" else "")
    return lambda: runtime.run_batch(b.x_float)


def tflite_timer(b: Bench, row: Row, model, quantize: str, **convert):
    """The timed LiteRT run (``num_threads`` = cores) of ``model`` converted with ``quantize`` (``convert``:
    the calibration options); notes the file size in ``row``."""
    return exported_timer(b, row, model, f"tflite-{quantize}", **convert)


def _exported(form: str):
    def build(b: Bench, row: Row):
        return exported_timer(b, row, b.model, form, calibration_count=b.settings.calibration_count)

    return build


def _exported_int8(b: Bench, row: Row):
    """The int8 file timed as :func:`_exported` times the others, its activation ranges taken as
    ``drn export tflite --quantize int8`` takes them (:func:`drn_tf.inference.export_cache.int8_calibration`: a
    bundled preset's shipped ranges, no images read; other weights calibrate on ``<data>/train``); the row's note
    says which."""
    from drn_tf.inference.export_cache import int8_calibration

    ranges, said = int8_calibration(b.model)
    timer = exported_timer(b, row, b.model, "tflite-int8", calibration_count=b.settings.calibration_count,
                           int8_ranges=ranges)
    row.note += f"; int8 ranges {said}"
    return timer


def _keras_graph(b: Bench, row: Row):
    from drn_tf.inference.runtime import KerasRuntime

    runtime = KerasRuntime(b.model)
    return lambda: runtime.run_batch(b.x_float)


def train_batch(scale: int, settings: Settings):
    """The synthetic training batch ``(x, y)`` (numpy float32, seed 1) every in-memory training row uses."""
    p, b = settings.train_patch, settings.train_batch
    rng = np.random.default_rng(1)
    return rng.random((b, p, p, 3), dtype=np.float32), rng.random((b, p * scale, p * scale, 3), dtype=np.float32)


def training_net(config: dict, policy: str | None = None, jit_compile: bool = False):
    """A fresh DRN of ``config`` (seed 0 on TensorFlow) compiled for training as ``drn train`` compiles it: the
    training recipe's optimizer and loss (:func:`drn_tf.train.recipe.build_optimizer`,
    :func:`~drn_tf.train.recipe.build_loss`) of the default configuration, under the dtype ``policy`` if given.
    Backend-neutral (the JAX row builds it without TensorFlow)."""
    import keras

    from drn_tf.models.drn import DRN
    from drn_tf.train.config import DEFAULTS
    from drn_tf.train.recipe import build_loss, build_optimizer

    if keras.backend.backend() == "tensorflow":  # set_random_seed imports TensorFlow whenever it is installed
        keras.utils.set_random_seed(0)
    config = {k: v for k, v in config.items() if k not in ("name", "trainable")}
    saved = keras.mixed_precision.dtype_policy()
    try:
        if policy:
            keras.mixed_precision.set_dtype_policy(policy)
        net = DRN(**config)
    finally:
        keras.mixed_precision.set_dtype_policy(saved)
    net.compile(optimizer=build_optimizer(DEFAULTS), loss=build_loss(DEFAULTS), jit_compile=jit_compile)
    return net


def in_memory_step(net, b: Bench, row: Row):
    """The timed training step of ``net`` on the in-memory batch, traced now (so a form set up around
    this call is the one traced)."""
    x, y = b.train_xy
    net.train_on_batch(x, y)
    s = b.settings
    row.note = f"batch {s.train_batch} x {s.train_patch}x{s.train_patch} LR patches in memory"
    return lambda: net.train_on_batch(x, y)


def _train_tf(policy: str | None = None, jit_compile: bool = False):
    def build(b: Bench, row: Row):
        return in_memory_step(training_net(b.config, policy, jit_compile), b, row)

    return build


def _train_pipeline(b: Bench, row: Row):
    s = b.settings
    net = training_net(b.config)
    batches = iter(_train_dataset(int(b.config["scale"]), s.train_patch, s.train_batch))
    net.train_on_batch(*next(batches))  # trace now
    row.note = f"batch {s.train_batch} x {s.train_patch}x{s.train_patch} LR patches of {train_data_dir().name}"
    return lambda: net.train_on_batch(*next(batches))


def _train_jax(b: Bench, row: Row):
    """The training step on the JAX backend, in a subprocess (``KERAS_BACKEND=jax``; nothing there imports
    TensorFlow): the same model, batch and patch, timed round-robin with the JAX float32 matmul peak
    (:func:`drn_tf.train.summary.jax_matmul_peak_tflops`, ``n`` = the TensorFlow peak's) in that process."""
    import subprocess

    s = b.settings
    job = {"config": b.config, "train_batch": s.train_batch, "train_patch": s.train_patch, "runs": s.train_runs,
           "warmup": s.train_warmup, "matmul_n": s.matmul_n}
    root = str(Path(__file__).resolve().parents[2])  # the same drn_tf as this process
    code = f"import sys; sys.path.insert(0, {root!r}); from drn_tf.bench.benchmark import _jax_main; _jax_main()"
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(job, default=str), capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise RuntimeError(f"the JAX subprocess failed: {lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["tensorflow_imported"]:
        raise RuntimeError("the JAX subprocess imported TensorFlow")
    row.note = (f"JAX {out['jax']} on {out['device']}, batch {s.train_batch} x {s.train_patch}x{s.train_patch} LR "
                f"patches in memory; % of JAX's own fp32 peak, a jitted {s.matmul_n}x{s.matmul_n} matmul interleaved "
                "in that process")
    return out["step_s"], out["matmul_s"]


def _jax_main() -> None:
    """The JAX row's subprocess: a job (JSON) on stdin, ``{"step_s", "matmul_s", ...}`` (JSON) on stdout. Each
    round times one training step and one call of the engine's matmul peak (its ``n x n`` product, timed there)."""
    import jax
    import jax.numpy as jnp
    import keras

    from drn_tf.train.summary import jax_matmul_peak_tflops

    job = json.loads(sys.stdin.read())
    settings = Settings(train_batch=job["train_batch"], train_patch=job["train_patch"])
    x, y = (jnp.asarray(a) for a in train_batch(int(job["config"]["scale"]), settings))
    net = training_net(job["config"], jit_compile=True)
    n = job["matmul_n"]
    peaks = []
    times = interleaved({"step": lambda: net.train_on_batch(x, y),
                         "matmul": lambda: peaks.append(jax_matmul_peak_tflops("float32", n, repeats=1)["tflops"])},
                        job["runs"], job["warmup"])
    matmul_s = [2.0 * n**3 / (tflops * 1e12) for tflops in peaks[-len(times["step"]):]]
    print(json.dumps({"step_s": times["step"], "matmul_s": matmul_s, "jax": jax.__version__,
                      "keras": keras.__version__, "device": str(jax.devices()[0].platform),
                      "tensorflow_imported": "tensorflow" in sys.modules}))


def _exported_variant(form: str, runtime: str, build: Callable | None = None) -> Variant:
    """The row of an export form: its description and ``runtime``, timed by ``build`` (default :func:`_exported`)."""
    from drn_tf.export.formats import FORMATS

    return Variant(f"{FORMATS[form].description}, {runtime}", "inference", build or _exported(form))


VARIANTS: dict[str, Variant] = {
    "keras-eager": Variant("Keras fp32, eager (op by op)", "inference", _keras_eager),
    "keras-graph": Variant("Keras fp32, tf.function graph (predict_on_batch)", "inference", _keras_graph),
    "keras-xla": Variant("Keras fp32, tf.function(jit_compile=True) (XLA)", "inference", _keras_xla),
    "saved_model": _exported_variant("saved_model", "TF runtime"),
    "tflite-float32": _exported_variant("tflite-float32", "LiteRT + XNNPACK"),
    "tflite-float16": _exported_variant("tflite-float16", "LiteRT + XNNPACK"),
    "tflite-dynamic": _exported_variant("tflite-dynamic", "LiteRT + XNNPACK"),
    "tflite-int8": _exported_variant("tflite-int8", "LiteRT + XNNPACK", _exported_int8),
    "train-graph": Variant("training step, training recipe's optimizer + L1, tf.function graph", "training",
                           _train_tf()),
    "train-bf16": Variant(
        "train-graph under the mixed_bfloat16 policy (`drn train --mixed-precision mixed_bfloat16`); bf16 math, "
        "so its % is against the fp32 peak", "training", _train_tf("mixed_bfloat16"),
    ),
    "train-xla": Variant("training step, training recipe's optimizer + L1, jit_compile=True (XLA)", "training",
                         _train_tf(jit_compile=True)),
    "train-pipeline": Variant(
        "training step, graph, batches from the tf.data pipeline (drn_tf.data.tfdata, prefetch)", "training",
        _train_pipeline,
    ),
    "train-jax": Variant("training step, training recipe's optimizer + L1, JAX backend (jit), in a subprocess",
                         "training", measure=_train_jax),
}
ALL_VARIANTS = tuple(VARIANTS)


# ---------------------------------------------------------------- training data


def train_data_dir() -> Path:
    """Training images for the pipeline variant: ``<data>/train/T91``."""
    from drn_tf.export.common import default_data_dir

    return default_data_dir() / "train" / "T91"


def _train_dataset(scale: int, patch: int, batch: int):
    from drn_tf.data.tfdata import make_train_dataset

    folder = train_data_dir()
    if not folder.is_dir():
        raise FileNotFoundError(f"no training images at {folder} (set DRN_DATA)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "too small for x2 patches" for a few T91 images
        return make_train_dataset([folder], scale, patch_size=patch, batch_size=batch)


def pipeline_rate(scale: int, patch: int, batch: int, batches: int = 50) -> float | None:
    """Patches/s of the training input pipeline alone (tf.data, cached LR)."""
    try:
        it = iter(_train_dataset(scale, patch, batch))
        next(it)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * batch / (time.perf_counter() - t0)
    except Exception:  # noqa: BLE001 - a diagnostic only
        return None


# ---------------------------------------------------------------- run


def _unavailable(row: Row, exc: Exception, say) -> None:
    row.available = False
    row.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    say(f"  {row.name}: unavailable ({row.reason})")


def _timers(bench: Bench, names, registry: dict, rows: dict, say) -> dict:
    """The callables of the variants that can be built; the others are marked unavailable with the reason."""
    timers = {}
    for name in names:
        say(f"  preparing {name} ...")
        try:
            timers[name] = registry[name].build(bench, rows[name])
        except Exception as exc:  # noqa: BLE001 - report the variant as unavailable, keep going
            _unavailable(rows[name], exc, say)
    return timers


def _fill(row: Row, samples: list[float], flops: float) -> None:
    med, best = statistics.median(samples), min(samples)
    row.samples_ms = [round(1e3 * t, 3) for t in samples]
    row.latency_ms = 1e3 * med
    row.best_ms = 1e3 * best
    row.gflops = flops / med / 1e9
    row.gflops_best = flops / best / 1e9


@dataclass
class _Run:
    """One benchmark run's measurements as they are taken: the rows, the matmul peaks' samples, the profiles."""

    bench: Bench
    registry: dict
    rows: dict
    say: Callable
    flops_inf: float
    flops_train: float
    out_mp: float
    mm: dict = field(default_factory=dict)  # "__matmul_<mode>__" -> callable
    peak_samples: dict = field(default_factory=dict)
    int8_samples: list = field(default_factory=list)
    int8_reason: str = "not measured (no inference variant selected)"
    pipe: float | None = None
    profiles: dict = field(default_factory=dict)

    def fill(self, row: Row, samples) -> None:
        settings = self.bench.settings
        if row.kind == "training":
            _fill(row, samples, self.flops_train)
            row.patches_per_s = settings.train_batch / statistics.median(samples)
        else:
            _fill(row, samples, self.flops_inf)
            row.output_mp_per_s = self.out_mp / statistics.median(samples)

    def _timed_round_robin(self, names, runs: int, warmup: int, extra: dict | None = None) -> dict:
        """Build the variants ``names``, time them interleaved with the matmuls (and ``extra``), fill their rows;
        returns the timers (for the profile)."""
        timers = _timers(self.bench, names, self.registry, self.rows, self.say)
        built = dict(timers)
        timers.update(self.mm)
        timers.update(extra or {})
        self.say(f"{len(built)} variants + matmul peaks, {warmup} warm-up + {runs} rounds")
        times = interleaved(timers, runs, warmup)
        for k in self.mm:
            self.peak_samples[k] += times.pop(k)
        for k in extra or {}:
            self.int8_samples = times.pop(k)
        for name, samples in times.items():
            self.fill(self.rows[name], samples)
        return built

    def inference(self, names) -> None:
        s = self.bench.settings
        self.say(f"inference, {s.size[0]}x{s.size[1]} input: preparing {len(names)} variants")
        extra = {}
        try:
            extra["__int8_matmul__"] = int8_matmul_fn(s.int8_matmul_n)
        except Exception as exc:  # noqa: BLE001 - a reference figure only
            self.int8_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        timers = self._timed_round_robin(names, s.runs, s.warmup, extra)
        if s.profile and "keras-graph" in timers:
            self.say("profiling keras-graph ...")
            self.profiles["inference"] = summarise_profile(profile_ops(timers["keras-graph"]), self.flops_inf)

    def training(self, names) -> None:
        s = self.bench.settings
        self.say(f"training, batch {s.train_batch} x {s.train_patch}x{s.train_patch}: preparing")
        timers = self._timed_round_robin(names, s.train_runs, s.train_warmup)
        self.pipe = pipeline_rate(int(self.bench.config["scale"]), s.train_patch, s.train_batch)
        if s.profile and "train-graph" in timers:
            self.say("profiling train-graph ...")
            self.profiles["training"] = summarise_profile(profile_ops(timers["train-graph"]), self.flops_train)

    def alone(self, name: str) -> None:
        """A variant that times itself (in another process) against its own matmul peak."""
        s = self.bench.settings
        self.say(f"{name}: measuring ({s.train_warmup} warm-up + {s.train_runs} rounds with its matmul)")
        row = self.rows[name]
        try:
            samples, own_peak = self.registry[name].measure(self.bench, row)
        except Exception as exc:  # noqa: BLE001
            _unavailable(row, exc, self.say)
            return
        self.fill(row, samples)
        mm_flops = 2.0 * s.matmul_n**3
        row.peak_gflops = mm_flops / statistics.median(own_peak) / 1e9
        row.peak_gflops_best = mm_flops / min(own_peak) / 1e9


def run_benchmark(
    preset: str = "drn_x2",
    model_path=None,
    variants=ALL_VARIANTS,
    settings: Settings | None = None,
    progress=None,
    registry: dict[str, Variant] | None = None,
) -> dict:
    """Measure ``variants`` (names in ``registry``, default :data:`VARIANTS`, in table order); returns the
    JSON-able result dict (see :func:`to_markdown`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from drn_tf.models.analysis import count_macs, model_config

    registry = registry or VARIANTS
    settings = settings or Settings()
    unknown = [v for v in variants if v not in registry]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(registry)}")
    t_start = time.perf_counter()
    info = machine_info()
    resolved = load_benchmark_model(preset, model_path)
    config = model_config(resolved.model)
    h, w = settings.size
    scale = int(config["scale"])
    train_macs = count_macs(config, settings.train_patch, settings.train_patch) * settings.train_batch
    with tempfile.TemporaryDirectory(prefix="drn-benchmark-") as tmp:
        run = _Run(Bench(resolved.model, config, settings, Path(tmp)), registry,
                   {name: Row(name, registry[name].description, registry[name].kind) for name in variants},
                   progress or (lambda msg: None), flops_inf=2.0 * count_macs(config, h, w),
                   flops_train=3 * 2.0 * train_macs, out_mp=h * scale * w * scale / 1e6)
        run.mm = {f"__matmul_{k}__": fn for k, fn in matmul_fns(settings.matmul_n).items()}
        run.peak_samples = {k: [] for k in run.mm}
        for kind, measure in (("inference", run.inference), ("training", run.training)):
            names = [v for v in variants if registry[v].kind == kind and registry[v].build]
            if names:
                measure(names)
        for name in (v for v in variants if registry[v].measure):
            run.alone(name)
        if not any(run.peak_samples.values()):
            run.peak_samples = interleaved(run.mm, settings.runs, settings.warmup)
    info["load_average_end"] = load_average()
    return _result(run, info, resolved, preset if not model_path else None, t_start)


def _peaks(run: _Run) -> dict:
    """The fp32 matmul peak (the faster mode) and the int8 one, from the run's samples."""
    s = run.bench.settings
    mm_flops = 2.0 * s.matmul_n**3
    by_mode = {k.strip("_").split("_")[1]: mm_flops / statistics.median(v) / 1e9 for k, v in run.peak_samples.items()}
    best_by_mode = {k.strip("_").split("_")[1]: mm_flops / min(v) / 1e9 for k, v in run.peak_samples.items()}
    mode = max(by_mode, key=by_mode.get)
    peak, peak_best = by_mode[mode], max(best_by_mode.values())
    i8 = run.int8_samples
    int8_peak = 2.0 * s.int8_matmul_n**3 / statistics.median(i8) / 1e9 if i8 else None
    int8_peak_best = 2.0 * s.int8_matmul_n**3 / min(i8) / 1e9 if i8 else None
    return {
        "peak": {
            "what": f"tf.linalg.matmul float32 {s.matmul_n}x{s.matmul_n}, the faster of graph mode "
            f"(oneDNN) and XLA ({mode} here), interleaved with the model runs",
            "gflops": peak,
            "gflops_best": peak_best,
            "mode": mode,
            "gflops_by_mode": by_mode,
            "gflops_best_by_mode": best_by_mode,
            "samples_ms": {k.strip("_").split("_")[1]: [round(1e3 * t, 3) for t in v]
                           for k, v in run.peak_samples.items()},
        },
        "int8_peak": {
            "what": f"TFLite full-int8 FULLY_CONNECTED {s.int8_matmul_n}x{s.int8_matmul_n} by "
            f"{s.int8_matmul_n}x{s.int8_matmul_n}, LiteRT + XNNPACK, {cpu_count()} threads, "
            "interleaved with the model runs",
            "gops": int8_peak,
            "gops_best": int8_peak_best,
            "ratio_to_fp32_peak": None if int8_peak is None else int8_peak / peak,
            "ratio_to_fp32_peak_best": None if int8_peak_best is None else int8_peak_best / peak_best,
            "samples_ms": [round(1e3 * t, 3) for t in i8],
            "reason": None if int8_peak else run.int8_reason,
        },
    }


def _result(run: _Run, info: dict, resolved, preset: str | None, t_start: float) -> dict:
    """The JSON-able result of a finished run (see :func:`to_markdown`)."""
    from drn_tf.models.analysis import count_macs, count_params

    settings, config = run.bench.settings, run.bench.config
    scale = int(config["scale"])
    h, w = settings.size
    peaks = _peaks(run)
    for r in run.rows.values():
        if r.gflops is not None:
            r.pct_peak = 100.0 * r.gflops / (r.peak_gflops or peaks["peak"]["gflops"])
            r.pct_peak_best = 100.0 * r.gflops_best / (r.peak_gflops_best or peaks["peak"]["gflops_best"])
    return {
        "format": "drn_tf.bench.benchmark/1",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": info,
        "model": {
            "source": resolved.description + ("" if resolved.trained else "; latency does not depend on the weights"),
            "trained": resolved.trained,
            "preset": preset,
            "scale": scale,
            "parameters": count_params(config),
            "macs_per_output_megapixel": count_macs(config, 1000, 1000) / (1000 * scale) ** 2 * 1e6,
        },
        "settings": dict(asdict(settings), size=list(settings.size)),
        "input": {"height": h, "width": w, "output_megapixels": run.out_mp, "macs": count_macs(config, h, w),
                  "gflop": run.flops_inf / 1e9},
        "training_input": {
            "batch": settings.train_batch,
            "patch": settings.train_patch,
            "gflop_per_step": run.flops_train / 1e9,
            "flops_rule": "3 x forward (backward = 2 x forward)",
        },
        **peaks,
        "input_pipeline_patches_per_s": run.pipe,
        "rows": [asdict(r) for r in run.rows.values()],
        "profiles": run.profiles,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }


def write_json(result: dict, path) -> Path:
    from drn_tf.core.utils import write_atomic

    return write_atomic(path, json.dumps(result, indent=2, default=str) + "\n")


def write_text(text: str, path) -> Path:
    from drn_tf.core.utils import write_atomic

    return write_atomic(path, text)


__all__ = ["ALL_VARIANTS", "VARIANTS", "Bench", "Row", "Settings", "Variant", "cpu_count", "in_memory_step",
           "interleaved", "is_conv_op", "run_benchmark", "summarise_profile", "tflite_timer", "to_markdown",
           "training_net", "write_json", "write_text"]
