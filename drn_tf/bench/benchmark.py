"""``drn benchmark``: latency, throughput and achieved GFLOP/s against this
machine's measured fp32 matrix-multiply peak.

What it measures, in one run:

* **peak**: a large ``tf.linalg.matmul`` (``n x n`` float32, ``2 n^3`` FLOPs),
  timed *interleaved* with the model runs (one matmul per round), so the peak
  and the model figures see the same machine load;
* **inference** of one ``1 x H x W x 3`` float32 input for every variant:
  Keras eager (op by op), Keras graph (``tf.function``, what
  ``predict_on_batch`` runs), Keras XLA (``jit_compile=True``), the
  SavedModel ``serving_default`` signature, and the TFLite files from
  :func:`drn_tf.export.tflite.convert_tflite` (float32, float16, dynamic, int8) run
  by the LiteRT interpreter with ``num_threads`` = cores. Per variant: median
  latency after warm-up, output megapixels/s, achieved GFLOP/s
  (``2 x MACs / latency``, MACs from :mod:`drn_tf.models.analysis`) and its share
  of the peak;
* **training** (Adam, L1 loss, synthetic in-memory patches of the training
  configuration's size) on TensorFlow with and without XLA, in mixed_bfloat16,
  and from the ``tf.data`` pipeline; and on the **JAX** backend in a
  subprocess (``KERAS_BACKEND=jax``, no TensorFlow imported there), against a
  JAX float32 matmul peak measured in that subprocess. Patches/s and GFLOP/s
  with training FLOPs taken as ``3 x`` the forward pass (backward = 2 x forward);
* a **profile** (``tf.profiler``) of one graph-mode inference and one training
  step: time per op type, and the GFLOP/s of the convolutions alone.

Every timed variant runs round-robin with the others of its kind and the
matmuls (after its own warm-up), so a load change on a shared machine hits all
of them alike; the figures are medians, with the fastest runs beside them.

The variants are one registry, :data:`VARIANTS` (name -> :class:`Variant`);
``run_benchmark(registry=...)`` takes an extended one (``tools/benchmark_diagnostics.py``
adds the diagnostics of past rounds). The report is factual: measurements, no
targets (``tools/benchmark_notes.py`` puts a round's goals and notes on a result JSON).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
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

from drn_tf.core.utils import cpu_flags, cpu_model


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


# ---------------------------------------------------------------- machine


def cpu_count() -> int:
    """Cores this process may run on (affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - version lookup only
        litert = None
    return {
        "cpu_model": cpu_model(),
        "cores": cpu_count(),
        "logical_cpus": os.cpu_count(),
        "cpu_flags": cpu_flags(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": litert,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default (cores)",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default (cores)",
        "load_average_start": load_average(),
    }


# ---------------------------------------------------------------- timing


def interleaved(fns: dict, runs: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each function: warm-up, then ``runs`` rounds in turn."""
    for fn in fns.values():
        for _ in range(max(0, warmup)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def matmul_fns(n: int) -> dict:
    """Callables running one float32 ``n x n`` matmul (``2 n^3`` FLOPs) to
    completion: ``tf.linalg.matmul`` in a graph (oneDNN) and under XLA; the
    peak is the faster of the two."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
    b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))

    def product(a, b):
        return tf.linalg.matmul(a, b)[0, 0]

    graph = tf.function(product)
    xla = tf.function(product, jit_compile=True)
    return {"graph": lambda: graph(a, b).numpy(), "xla": lambda: xla(a, b).numpy()}


@contextlib.contextmanager
def _quiet():
    """C++ chatter on fd 2 (converter, delegates; :func:`drn_tf.core.utils.quiet_stderr`) and Python warnings off."""
    from drn_tf.core.utils import quiet_stderr

    with quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def int8_matmul_fn(n: int, threads: int | None = None):
    """A callable running one int8 ``n x n`` by ``n x n`` matrix product
    (``2 n^3`` operations) as a full-int8 TFLite ``FULLY_CONNECTED`` in the
    LiteRT interpreter (XNNPACK): the int8 peak the int8 model can hope for."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    w = tf.constant((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([n, n], tf.float32)])
    def product(x):
        return tf.linalg.matmul(x, w)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([product.get_concrete_function()], product)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.standard_normal((n, n)).astype(np.float32)] for _ in range(2))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with _quiet():
        flat = converter.convert()
        interpreter = Interpreter(model_content=flat, num_threads=threads or cpu_count())
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    x = rng.integers(-127, 128, size=(n, n), dtype=np.int8)

    def run():
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    run()
    return run


# ---------------------------------------------------------------- profile


# trace events on the executor threads that are not ops
_NOT_OPS = {"Process", "Record", "StartRegion", "StopRegion", "Run", "ExecutorDoneCallback", "MemoryAllocation",
            "MemoryDeallocation", "ParallelFor"}


def profile_ops(fn, repeats: int = 1) -> dict[str, float] | None:
    """Milliseconds per TensorFlow op type over ``repeats`` calls of ``fn``
    (from a ``tf.profiler`` trace, host plane, executor threads only), plus
    ``"__wall__"``; None if the trace cannot be read."""
    import tensorflow as tf

    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        return None
    fn()
    with tempfile.TemporaryDirectory(prefix="drn-profile-") as logdir:
        try:
            tf.profiler.experimental.start(logdir)
        except Exception:  # noqa: BLE001 - another profiler running, or none built in
            return None
        try:
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            wall = time.perf_counter() - t0
        finally:
            tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not files:
            return None
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(files[0]).read_bytes())
    totals: dict[str, float] = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        meta = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for ev in line.events:
                name = meta[ev.metadata_id].name
                if ":" not in name:
                    continue
                op = name.rsplit(":", 1)[1].strip()
                if op in _NOT_OPS or not op.replace("_", "").isalnum():
                    continue
                totals[op] = totals.get(op, 0.0) + ev.duration_ps / 1e9 / repeats
    if not totals:
        return None
    totals["__wall__"] = 1e3 * wall / repeats
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))




def is_conv_op(op: str) -> bool:
    return "Conv2D" in op or op.endswith("Conv2DBackpropInput") or op.endswith("Conv2DBackpropFilter")


def summarise_profile(ops: dict[str, float] | None, flops: float) -> dict | None:
    """Conv share of the op time and the convolutions' own GFLOP/s."""
    if not ops:
        return None
    wall = ops.get("__wall__")
    items = {k: v for k, v in ops.items() if k != "__wall__"}
    total = sum(items.values())
    conv = sum(v for k, v in items.items() if is_conv_op(k))
    top = [(k, round(v, 2)) for k, v in list(items.items())[:8]]
    # On the inter-op pool two ops can run at once (e.g. the two backward
    # convolutions of a layer, or a Pad beside the convolution reading the
    # same input), sharing the intra-op threads. If the convolutions' summed
    # durations exceed the wall time they overlapped each other, and their
    # durations say nothing about kernel speed.
    overlap = bool(wall) and conv > 1.02 * wall
    return {
        "wall_ms": round(wall, 2) if wall else None,
        "op_ms": round(total, 2),
        "conv_ms": round(conv, 2),
        "other_ms": round(total - conv, 2),
        "conv_share_pct": round(100 * conv / total, 1) if total else None,
        "conv_gflops": round(flops / (conv * 1e-3) / 1e9, 1) if conv and not overlap else None,
        "overlap": overlap,
        "top_ops_ms": top,
    }


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


def _keras_graph(b: Bench, row: Row):
    return lambda: b.model.predict_on_batch(b.x_float)


def _keras_xla(b: Bench, row: Row):
    import tensorflow as tf

    fn = tf.function(lambda x: b.model(x, training=False), jit_compile=True)
    fn(b.x_tf)  # compile now, so a failure marks the variant unavailable
    return lambda: fn(b.x_tf).numpy()


def _saved_model(b: Bench, row: Row):
    import tensorflow as tf

    from drn_tf.export.common import SERVING_INPUT, SERVING_OUTPUT
    from drn_tf.export.savedmodel import export_saved_model

    folder = export_saved_model(b.model, b.workdir / "saved_model", version=1, overwrite=True)
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    xu = tf.constant(b.x_uint8)
    return lambda: serve(**{SERVING_INPUT: xu})[SERVING_OUTPUT].numpy()


def tflite_timer(b: Bench, row: Row, model, quantize: str, **convert):
    """The timed LiteRT run (``num_threads`` = cores) of ``model`` converted with ``quantize``;
    notes the file size in ``row``."""
    try:
        from drn_tf.export.tflite import convert_tflite
        from drn_tf.inference.runtimes import TFLiteUpscaler
    except ImportError as exc:
        raise RuntimeError(f"drn_tf.export.tflite has no TFLite conversion ({exc})") from None
    with _quiet():
        flat = convert_tflite(model, quantize, workdir=b.workdir, **convert)
        runner = TFLiteUpscaler(flat, num_threads=cpu_count())
    batch = b.x_uint8 if runner.uint8_io else b.x_float
    runner.run(batch)
    row.note = f"{len(flat) / 1e6:.2f} MB, {cpu_count()} threads"
    return lambda: runner.run(batch)


def _tflite(quantize: str):
    def build(b: Bench, row: Row):
        return tflite_timer(b, row, b.model, quantize, calibration_count=b.settings.calibration_count)

    return build


def train_batch(scale: int, settings: Settings):
    """The synthetic training batch ``(x, y)`` (numpy float32, seed 1) every in-memory training row uses."""
    p, b = settings.train_patch, settings.train_batch
    rng = np.random.default_rng(1)
    return rng.random((b, p, p, 3), dtype=np.float32), rng.random((b, p * scale, p * scale, 3), dtype=np.float32)


def training_net(config: dict, policy: str | None = None, jit_compile: bool = False):
    """A fresh DRN of ``config`` (seed 0 on TensorFlow) compiled for training as ``drn train`` does (Adam, L1 loss),
    under the dtype ``policy`` if given. Backend-neutral (the JAX row builds it without TensorFlow)."""
    import keras

    from drn_tf.models.drn import DRN
    from drn_tf.train.callbacks import l1_loss

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
    net.compile(optimizer=keras.optimizers.Adam(1e-4), loss=l1_loss(), jit_compile=jit_compile)
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
    TensorFlow): the same model, batch and patch, timed round-robin with a jitted float32 ``n x n`` matmul
    (``n`` = the TensorFlow peak's) in that process."""
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
    """The JAX row's subprocess: a job (JSON) on stdin, ``{"step_s", "matmul_s", ...}`` (JSON) on stdout."""
    import jax
    import jax.numpy as jnp
    import keras

    job = json.loads(sys.stdin.read())
    settings = Settings(train_batch=job["train_batch"], train_patch=job["train_patch"])
    x, y = (jnp.asarray(a) for a in train_batch(int(job["config"]["scale"]), settings))
    net = training_net(job["config"], jit_compile=True)
    n = job["matmul_n"]
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype=jnp.float32)
    m = jax.random.normal(key_b, (n, n), dtype=jnp.float32)
    product = jax.jit(lambda a, m: a @ m)
    times = interleaved({"step": lambda: net.train_on_batch(x, y), "matmul": lambda: product(a, m).block_until_ready()},
                        job["runs"], job["warmup"])
    print(json.dumps({"step_s": times["step"], "matmul_s": times["matmul"], "jax": jax.__version__,
                      "keras": keras.__version__, "device": str(jax.devices()[0].platform),
                      "tensorflow_imported": "tensorflow" in sys.modules}))


VARIANTS: dict[str, Variant] = {
    "keras-eager": Variant("Keras fp32, eager (op by op)", "inference", _keras_eager),
    "keras-graph": Variant("Keras fp32, tf.function graph (predict_on_batch)", "inference", _keras_graph),
    "keras-xla": Variant("Keras fp32, tf.function(jit_compile=True) (XLA)", "inference", _keras_xla),
    "saved_model": Variant("SavedModel `serving_default` (uint8 in/out), TF runtime", "inference", _saved_model),
    "tflite-float32": Variant("TFLite float32, LiteRT + XNNPACK", "inference", _tflite("float32")),
    "tflite-float16": Variant("TFLite float16 weights, LiteRT + XNNPACK", "inference", _tflite("float16")),
    "tflite-dynamic": Variant("TFLite dynamic-range int8 weights, LiteRT + XNNPACK", "inference", _tflite("dynamic")),
    "tflite-int8": Variant("TFLite full int8 (uint8 I/O), LiteRT + XNNPACK", "inference", _tflite("int8")),
    "train-graph": Variant("training step, Adam + L1, tf.function graph", "training", _train_tf()),
    "train-bf16": Variant(
        "train-graph under the mixed_bfloat16 policy (`drn train --mixed-precision mixed_bfloat16`); bf16 math, "
        "so its % is against the fp32 peak", "training", _train_tf("mixed_bfloat16"),
    ),
    "train-xla": Variant("training step, Adam + L1, jit_compile=True (XLA)", "training", _train_tf(jit_compile=True)),
    "train-pipeline": Variant(
        "training step, graph, batches from the tf.data pipeline (drn_tf.data.tfdata, prefetch)", "training",
        _train_pipeline,
    ),
    "train-jax": Variant("training step, Adam + L1, JAX backend (jit), in a subprocess", "training",
                         measure=_train_jax),
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
    from drn_tf.models.analysis import count_macs, count_params, model_config

    registry = registry or VARIANTS
    settings = settings or Settings()
    say = progress or (lambda msg: None)
    unknown = [v for v in variants if v not in registry]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(registry)}")
    t_start = time.perf_counter()
    info = machine_info()
    resolved = load_benchmark_model(preset, model_path)
    model = resolved.model
    config = model_config(model)
    scale = int(config["scale"])
    h, w = settings.size
    macs = count_macs(config, h, w)
    out_mp = h * scale * w * scale / 1e6
    flops_inf = 2.0 * macs
    train_macs = count_macs(config, settings.train_patch, settings.train_patch) * settings.train_batch
    flops_train = 3 * 2.0 * train_macs
    rows = {name: Row(name, registry[name].description, registry[name].kind) for name in variants}
    mm = {f"__matmul_{k}__": fn for k, fn in matmul_fns(settings.matmul_n).items()}
    mm_flops = 2.0 * settings.matmul_n**3
    peak_samples: dict[str, list[float]] = {k: [] for k in mm}
    int8_samples: list[float] = []
    int8_reason = "not measured (no inference variant selected)"
    pipe = None
    profiles = {}

    def fill(row: Row, samples):
        if row.kind == "training":
            _fill(row, samples, flops_train)
            row.patches_per_s = settings.train_batch / statistics.median(samples)
        else:
            _fill(row, samples, flops_inf)
            row.output_mp_per_s = out_mp / statistics.median(samples)

    with tempfile.TemporaryDirectory(prefix="drn-benchmark-") as tmp:
        bench = Bench(model, config, settings, Path(tmp))
        inf = [v for v in variants if registry[v].kind == "inference" and registry[v].build]
        if inf:
            say(f"inference, {h}x{w} input: preparing {len(inf)} variants")
            timers = _timers(bench, inf, registry, rows, say)
            timers.update(mm)
            try:
                timers["__int8_matmul__"] = int8_matmul_fn(settings.int8_matmul_n)
            except Exception as exc:  # noqa: BLE001 - a reference figure only
                int8_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            say(f"inference: {len(inf)} variants + matmul peaks, {settings.warmup} warm-up + {settings.runs} rounds")
            times = interleaved(timers, settings.runs, settings.warmup)
            for k in mm:
                peak_samples[k] += times.pop(k)
            int8_samples = times.pop("__int8_matmul__", [])
            for name, samples in times.items():
                fill(rows[name], samples)
            if settings.profile and "keras-graph" in timers:
                say("profiling keras-graph ...")
                profiles["inference"] = summarise_profile(profile_ops(timers["keras-graph"]), flops_inf)
            del timers
        trn = [v for v in variants if registry[v].kind == "training" and registry[v].build]
        if trn:
            say(f"training, batch {settings.train_batch} x {settings.train_patch}x{settings.train_patch}: preparing")
            timers = _timers(bench, trn, registry, rows, say)
            n_train = len(timers)
            timers.update(mm)
            say(f"training: {n_train} variants + matmuls, {settings.train_warmup} warm-up + "
                f"{settings.train_runs} rounds")
            times = interleaved(timers, settings.train_runs, settings.train_warmup)
            for k in mm:
                peak_samples[k] += times.pop(k)
            for name, samples in times.items():
                fill(rows[name], samples)
            pipe = pipeline_rate(scale, settings.train_patch, settings.train_batch)
            if settings.profile and "train-graph" in timers:
                say("profiling train-graph ...")
                profiles["training"] = summarise_profile(profile_ops(timers["train-graph"]), flops_train)
            del timers
        for name in (v for v in variants if registry[v].measure):
            say(f"{name}: measuring ({settings.train_warmup} warm-up + {settings.train_runs} rounds with its matmul)")
            row = rows[name]
            try:
                samples, own_peak = registry[name].measure(bench, row)
            except Exception as exc:  # noqa: BLE001
                _unavailable(row, exc, say)
                continue
            fill(row, samples)
            row.peak_gflops = mm_flops / statistics.median(own_peak) / 1e9
            row.peak_gflops_best = mm_flops / min(own_peak) / 1e9
        if not any(peak_samples.values()):
            peak_samples = interleaved(mm, settings.runs, settings.warmup)

    peak_by_mode = {k.strip("_").split("_")[1]: mm_flops / statistics.median(v) / 1e9 for k, v in peak_samples.items()}
    peak_best_by_mode = {k.strip("_").split("_")[1]: mm_flops / min(v) / 1e9 for k, v in peak_samples.items()}
    peak_mode = max(peak_by_mode, key=peak_by_mode.get)
    peak = peak_by_mode[peak_mode]
    peak_best = max(peak_best_by_mode.values())
    int8_peak = 2.0 * settings.int8_matmul_n**3 / statistics.median(int8_samples) / 1e9 if int8_samples else None
    int8_peak_best = 2.0 * settings.int8_matmul_n**3 / min(int8_samples) / 1e9 if int8_samples else None
    for r in rows.values():
        if r.gflops is not None:
            r.pct_peak = 100.0 * r.gflops / (r.peak_gflops or peak)
            r.pct_peak_best = 100.0 * r.gflops_best / (r.peak_gflops_best or peak_best)
    info["load_average_end"] = load_average()
    result = {
        "format": "drn_tf.bench.benchmark/1",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": info,
        "model": {
            "source": resolved.description + ("" if resolved.trained else "; latency does not depend on the weights"),
            "trained": resolved.trained,
            "preset": None if model_path else preset,
            "scale": scale,
            "parameters": count_params(config),
            "macs_per_output_megapixel": count_macs(config, 1000, 1000) / (1000 * scale) ** 2 * 1e6,
        },
        "settings": dict(asdict(settings), size=list(settings.size)),
        "input": {"height": h, "width": w, "output_megapixels": out_mp, "macs": macs, "gflop": flops_inf / 1e9},
        "training_input": {
            "batch": settings.train_batch,
            "patch": settings.train_patch,
            "gflop_per_step": flops_train / 1e9,
            "flops_rule": "3 x forward (backward = 2 x forward)",
        },
        "peak": {
            "what": f"tf.linalg.matmul float32 {settings.matmul_n}x{settings.matmul_n}, the faster of graph mode "
            f"(oneDNN) and XLA ({peak_mode} here), interleaved with the model runs",
            "gflops": peak,
            "gflops_best": peak_best,
            "mode": peak_mode,
            "gflops_by_mode": peak_by_mode,
            "gflops_best_by_mode": peak_best_by_mode,
            "samples_ms": {k.strip("_").split("_")[1]: [round(1e3 * t, 3) for t in v] for k, v in peak_samples.items()},
        },
        "int8_peak": {
            "what": f"TFLite full-int8 FULLY_CONNECTED {settings.int8_matmul_n}x{settings.int8_matmul_n} by "
            f"{settings.int8_matmul_n}x{settings.int8_matmul_n}, LiteRT + XNNPACK, {cpu_count()} threads, "
            "interleaved with the model runs",
            "gops": int8_peak,
            "gops_best": int8_peak_best,
            "ratio_to_fp32_peak": None if int8_peak is None else int8_peak / peak,
            "ratio_to_fp32_peak_best": None if int8_peak_best is None else int8_peak_best / peak_best,
            "samples_ms": [round(1e3 * t, 3) for t in int8_samples],
            "reason": None if int8_peak else int8_reason,
        },
        "input_pipeline_patches_per_s": pipe,
        "rows": [asdict(r) for r in rows.values()],
        "profiles": profiles,
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    return result


# ---------------------------------------------------------------- report


def _f(v, fmt="{:.1f}", none="-"):
    return none if v is None else fmt.format(v)


def to_markdown(result: dict) -> str:
    """The factual report of a :func:`run_benchmark` result: machine, model, peaks, the table, the profile."""
    m, mod, inp, tr, peak = result["machine"], result["model"], result["input"], result["training_input"], result["peak"]
    s = result["settings"]
    i8 = result.get("int8_peak") or {}
    n_peak = sum(len(v) for v in peak["samples_ms"].values())
    lines = [
        "## Performance",
        "",
        f"Generated by `{result.get('command', 'drn benchmark')}` on {result['date']} ({result['elapsed_s']:.0f} s).",
        "",
        f"- Machine: {m['cpu_model']}, **{m['cores']} cores** ({', '.join(m['cpu_flags']) or 'no AVX flags seen'}), "
        f"{m['system']}; 1-minute load average {_f(m['load_average_start'], '{:.2f}')} at the start, "
        f"{_f(m.get('load_average_end'), '{:.2f}')} at the end (the benchmark itself keeps {m['cores']} cores busy).",
        f"- Software: TensorFlow {m['tensorflow']} (oneDNN {'on' if m['onednn'] else 'off'}), Keras {m['keras']}, "
        f"LiteRT (ai-edge-litert) {m['ai_edge_litert']}; TF threads intra-op {m['intra_op_threads']}, inter-op "
        f"{m['inter_op_threads']}; LiteRT `num_threads` = {m['cores']}.",
        f"- Model: {mod['source']}; x{mod['scale']}, {mod['parameters']:,d} parameters, "
        f"{mod['macs_per_output_megapixel'] / 1e9:.3f} G multiply-adds per output megapixel "
        f"({inp['macs'] / 1e9:.2f} G for one {inp['height']}x{inp['width']} input = {inp['gflop']:.1f} GFLOP).",
        f"- **Measured fp32 peak: {peak['gflops']:.1f} GFLOP/s** (median; fastest run {peak['gflops_best']:.1f}) - "
        f"{peak['what']}; {n_peak} runs.",
        "- Measured int8 peak: "
        + (
            f"{i8['gops']:.0f} GOP/s = {i8['ratio_to_fp32_peak']:.2f}x the fp32 peak (fastest run "
            f"{i8['gops_best']:.0f} = {i8['ratio_to_fp32_peak_best']:.2f}x) - {i8['what']}."
            if i8.get("gops")
            else f"unavailable ({i8.get('reason')})."
        ),
        f"- Inference: one {inp['height']}x{inp['width']} float32 input ({inp['output_megapixels']:.3f} output MP), "
        f"median of {s['runs']} runs after {s['warmup']} warm-up. Training: batch {tr['batch']} of "
        f"{tr['patch']}x{tr['patch']} LR patches, {tr['gflop_per_step']:.1f} GFLOP per step "
        f"({tr['flops_rule']}), median of {s['train_runs']} steps after {s['train_warmup']} warm-up. "
        "Variants are timed round-robin with the matmuls, so load changes hit all alike; GFLOP/s = 2 x MACs / "
        "time. The 'best' columns use each variant's fastest run against the fastest matmul run: on a shared "
        "machine they show what the hardware does when no other process interferes."
        + (
            f" Training input pipeline alone: {result['input_pipeline_patches_per_s']:.0f} patches/s."
            if result.get("input_pipeline_patches_per_s")
            else ""
        ),
        "",
        "| variant | what | median (ms) | best (ms) | output MP/s | patches/s | GFLOP/s | % of peak | % of peak, best runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if not r["available"]:
            lines.append(f"| {r['name']} | {r['description']} | unavailable: {r['reason']} | | | | | | |")
            continue
        what = r["description"] + (f" ({r['note']})" if r["note"] else "")
        if r.get("peak_gflops"):
            what += f"; its peak {r['peak_gflops']:.1f} GFLOP/s (fastest run {r['peak_gflops_best']:.1f})"
        lines.append(
            f"| {r['name']} | {what} | {_f(r['latency_ms'])} | {_f(r['best_ms'])} | "
            f"{_f(r['output_mp_per_s'], '{:.3f}')} | {_f(r['patches_per_s'], '{:.2f}')} | {_f(r['gflops'])} | "
            f"{_f(r['pct_peak'])} | {_f(r['pct_peak_best'])} |"
        )
    prof = result.get("profiles") or {}
    if prof:
        lines += [
            "",
            "### Where the time goes (tf.profiler, one graph-mode run)",
            "",
            "| run | wall (ms) | op time (ms) | convolutions | other ops | conv GFLOP/s (% of peak) | top ops (ms) |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for key, p in prof.items():
            if not p:
                lines.append(f"| {key} | profile unavailable | | | | | |")
                continue
            if p["conv_gflops"] is None:
                conv = "n/a (convolutions overlap)" if p.get("overlap") else "-"
            else:
                conv = f"{p['conv_gflops']:.1f} ({100 * p['conv_gflops'] / peak['gflops']:.0f}%)"
            top = ", ".join(f"{k} {v:.0f}" for k, v in p["top_ops_ms"][:6])
            lines.append(
                f"| {key} | {_f(p['wall_ms'])} | {_f(p['op_ms'])} | {_f(p['conv_share_pct'])}% | "
                f"{100 - p['conv_share_pct']:.1f}% | {conv} | {top} |"
            )
    lines.append("")
    return "\n".join(lines)


def write_json(result: dict, path) -> Path:
    from drn_tf.core.utils import write_atomic

    return write_atomic(path, json.dumps(result, indent=2, default=str) + "\n")


def write_text(text: str, path) -> Path:
    from drn_tf.core.utils import write_atomic

    return write_atomic(path, text)
