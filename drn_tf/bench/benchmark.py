"""``drn benchmark``: latency, throughput and achieved GFLOP/s against this
machine's measured fp32 matrix-multiply peak.

TensorFlow-only module. What it measures, all in one process and one run:

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
  configuration's size) with and without XLA: patches/s and GFLOP/s with
  training FLOPs taken as ``3 x`` the forward pass (backward = 2 x forward);
* a **profile** (``tf.profiler``) of one graph-mode inference and one training
  step: time per op type, and the GFLOP/s of the convolutions alone, which
  says whether the gap to the peak is in the convolution kernels or around
  them.

Every timed variant runs round-robin with the others (after its own warm-up),
so a load change on a shared machine hits all of them alike; the figures are
medians.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from drn_tf.core.utils import cpu_flags, cpu_model

INFERENCE_VARIANTS = (
    "keras-eager",
    "keras-graph",
    "keras-xla",
    "saved_model",
    "tflite-float32",
    "tflite-float16",
    "tflite-dynamic",
    "tflite-int8",
)
DIAGNOSTIC_VARIANTS = ("keras-graph-concat", "tflite-int8-convs")
TRAIN_VARIANTS = ("train-graph", "train-xla", "train-pipeline")
TRAIN_DIAGNOSTICS = ("train-graph-concat", "train-bf16")
# table order: each diagnostic beside what it explains
ALL_VARIANTS = (
    "keras-eager", "keras-graph", "keras-graph-concat", "keras-xla", "saved_model", "tflite-float32",
    "tflite-float16", "tflite-dynamic", "tflite-int8", "tflite-int8-convs",
    "train-graph", "train-graph-concat", "train-bf16", "train-xla", "train-pipeline",
)
assert set(ALL_VARIANTS) == set(INFERENCE_VARIANTS + DIAGNOSTIC_VARIANTS + TRAIN_VARIANTS + TRAIN_DIAGNOSTICS)

DESCRIPTIONS = {
    "keras-eager": "Keras fp32, eager (op by op)",
    "keras-graph": "Keras fp32, tf.function graph (predict_on_batch)",
    "keras-xla": "Keras fp32, tf.function(jit_compile=True) (XLA)",
    "saved_model": "SavedModel `serving_default` (uint8 in/out), TF runtime",
    "tflite-float32": "TFLite float32, LiteRT + XNNPACK",
    "tflite-float16": "TFLite float16 weights, LiteRT + XNNPACK",
    "tflite-dynamic": "TFLite dynamic-range int8 weights, LiteRT + XNNPACK",
    "tflite-int8": "TFLite full int8 (uint8 I/O), LiteRT + XNNPACK",
    "keras-graph-concat": "diagnostic: keras-graph with the residual distilling block in its first form "
    "(slice, add, concat) instead of y + pad(x)",
    "tflite-int8-convs": "diagnostic: the model's 18 convolutions alone (same shapes, no activations/adds/pads), "
    "TFLite full int8",
    "train-graph": "training step, Adam + L1, tf.function graph",
    "train-graph-concat": "diagnostic: train-graph with the residual distilling block in its first form "
    "(slice, add, concat)",
    "train-bf16": "diagnostic: train-graph under the mixed_bfloat16 policy (`drn train --mixed-precision "
    "mixed_bfloat16`); bf16 math, so not counted against the fp32 peak",
    "train-xla": "training step, Adam + L1, jit_compile=True (XLA)",
    "train-pipeline": "training step, graph, batches from the tf.data pipeline (drn_tf.data.tfdata, prefetch)",
}

GOALS = {
    "keras_fp32_pct_peak": 75.0,  # Keras fp32 inference, % of the measured matmul peak
    "int8_speedup": 4.0,  # TFLite int8 throughput / Keras fp32 throughput
    "train_pct_peak": 50.0,  # training GFLOP/s, % of the measured matmul peak
}


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


@contextlib.contextmanager
def concat_residual():
    """Within the block, :class:`drn_tf.models.layers.ResidualDistillingBlock` computes
    ``concat(y[..., :w] + x, y[..., w:])`` (slices, add, concat: its first
    form) instead of ``y + pad(x)``: same result, for the comparison only.
    Functions traced inside keep that form."""
    from keras import ops

    from drn_tf.models import layers as L

    def call(self, x):
        width = x.shape[-1]
        y = L.apply_activation(self.conv(x), self.activation, self.negative_slope)
        return ops.concatenate([y[..., :width] + x, y[..., width:]], axis=-1)

    saved = L.ResidualDistillingBlock.call
    L.ResidualDistillingBlock.call = call
    try:
        yield
    finally:
        L.ResidualDistillingBlock.call = saved


def conv_chain_model(model):
    """A Keras model made of ``model``'s convolutions only (same shapes, in
    order, with the upsampler's pixel shuffles), without activations, adds,
    pads or concatenations: the time TFLite spends in the convolutions."""
    import keras

    from drn_tf.models import layers as L
    from drn_tf.models.analysis import model_config

    convs: list[tuple[int, int, int]] = []  # (filters, kernel, shuffle factor after it)
    for layer in model.layers:
        if isinstance(layer, L.ResidualDistillingGroup):
            convs += [(b.conv.filters, b.conv.kernel_size[0], 0) for b in layer.blocks]
            convs.append((layer.compress.filters, layer.compress.kernel_size[0], 0))
        elif isinstance(layer, L.Upsampler):
            for i, conv in enumerate(layer.convs):
                convs.append((conv.filters, conv.kernel_size[0], layer.stages[i] if i < len(layer.stages) else 0))
        elif isinstance(layer, keras.layers.Conv2D):
            convs.append((layer.filters, layer.kernel_size[0], 0))
    config = model_config(model)
    inputs = keras.Input((None, None, int(model.inputs[0].shape[-1])))
    x = inputs
    for i, (filters, kernel, shuffle) in enumerate(convs):
        x = keras.layers.Conv2D(filters, kernel, padding="same", name=f"conv_{i}")(x)
        if shuffle:
            x = L.PixelShuffle(shuffle, name=f"shuffle_{i}")(x)
    chain = keras.Model(inputs, x, name="conv_chain")
    chain.scale = int(config["scale"])  # what drn_tf.export.tflite.convert_tflite reads
    chain.receptive_radius = len(convs)
    return chain


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
    """``(model, source)``: the model file, else the preset's bundled trained
    model if ``assets/<preset>.keras`` exists, else a fresh one."""
    from drn_tf.models.drn import DRN, bundled_model_path, load_model

    if model_path:
        return load_model(model_path), f"{model_path} (model file)"
    bundled = bundled_model_path(preset)
    if bundled:
        return load_model(bundled), f"preset {preset}, trained bundled weights ({bundled.name})"
    return (
        DRN.from_preset(preset, load_weights=False),
        f"preset {preset}, freshly initialised (no assets/{preset}.keras; latency does not depend on the weights)",
    )


# ---------------------------------------------------------------- inference variants


def _inference_timers(model, variants, size, settings: Settings, rows: dict, workdir: Path, say):
    """Build the callables of the available variants; unavailable ones get a reason."""
    import tensorflow as tf

    h, w = size
    rng = np.random.default_rng(0)
    x_uint8 = rng.integers(0, 256, size=(1, h, w, 3), dtype=np.uint8)
    x_float = x_uint8.astype(np.float32) / 255.0
    xt = tf.constant(x_float)
    timers = {}
    for name in variants:
        row = rows[name]
        say(f"  preparing {name} ...")
        try:
            if name == "keras-eager":
                timers[name] = lambda: np.asarray(model(xt, training=False))
            elif name == "keras-graph":
                timers[name] = lambda: model.predict_on_batch(x_float)
            elif name == "keras-xla":
                fn = tf.function(lambda x: model(x, training=False), jit_compile=True)
                fn(xt)  # compile now, so a failure marks the variant unavailable
                timers[name] = lambda fn=fn: fn(xt).numpy()
            elif name == "keras-graph-concat":
                fn = tf.function(lambda x: model(x, training=False))
                with concat_residual():
                    fn(xt)  # traced now, with the old form of the block
                timers[name] = lambda fn=fn: fn(xt).numpy()
            elif name == "saved_model":
                from drn_tf.export.common import SERVING_INPUT, SERVING_OUTPUT
                from drn_tf.export.savedmodel import export_saved_model

                folder = export_saved_model(model, workdir / "saved_model", version=1, overwrite=True)
                serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
                xu = tf.constant(x_uint8)
                timers[name] = lambda serve=serve, xu=xu: serve(**{SERVING_INPUT: xu})[SERVING_OUTPUT].numpy()
            elif name.startswith("tflite-"):
                try:
                    from drn_tf.export.tflite import TFLiteUpscaler, convert_tflite
                except ImportError as exc:
                    raise RuntimeError(f"drn_tf.export.tflite has no TFLite conversion ({exc})") from None
                quantize = name.split("-")[1]
                with _quiet():
                    if name == "tflite-int8-convs":
                        calib = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(2)]
                        flat = convert_tflite(conv_chain_model(model), "int8", calibration=calib, workdir=workdir)
                    else:
                        flat = convert_tflite(model, quantize, calibration_count=settings.calibration_count,
                                              workdir=workdir)
                    runner = TFLiteUpscaler(flat, num_threads=cpu_count())
                batch = x_uint8 if runner.uint8_io else x_float
                runner.run(batch)
                row.note = f"{len(flat) / 1e6:.2f} MB, {cpu_count()} threads"
                timers[name] = lambda runner=runner, batch=batch: runner.run(batch)
            else:
                raise ValueError(f"unknown variant {name!r}")
        except Exception as exc:  # noqa: BLE001 - report the variant as unavailable, keep going
            row.available = False
            row.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            say(f"  {name}: unavailable ({row.reason})")
    return timers


# ---------------------------------------------------------------- training


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


def _training_timers(model_config: dict, variants, settings: Settings, rows: dict, say):
    import keras
    import tensorflow as tf

    from drn_tf.models.drn import DRN
    from drn_tf.train.callbacks import l1_loss

    s = int(model_config["scale"])
    p, b = settings.train_patch, settings.train_batch
    rng = np.random.default_rng(1)
    x = tf.constant(rng.random((b, p, p, 3), dtype=np.float32))
    y = tf.constant(rng.random((b, p * s, p * s, 3), dtype=np.float32))
    timers = {}
    for name in variants:
        row = rows[name]
        say(f"  preparing {name} ...")
        try:
            keras.utils.set_random_seed(0)
            config = {k: v for k, v in model_config.items() if k not in ("name", "trainable")}
            policy = keras.mixed_precision.dtype_policy()
            try:
                if name == "train-bf16":
                    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
                net = DRN(**config)
            finally:
                keras.mixed_precision.set_dtype_policy(policy)
            net.compile(optimizer=keras.optimizers.Adam(1e-4), loss=l1_loss(), jit_compile=name == "train-xla")
            if name == "train-pipeline":
                batches = iter(_train_dataset(s, p, b))
                net.train_on_batch(*next(batches))  # trace now
                timers[name] = lambda net=net, batches=batches: net.train_on_batch(*next(batches))
                row.note = f"batch {b} x {p}x{p} LR patches of {train_data_dir().name}"
            else:
                with concat_residual() if name == "train-graph-concat" else contextlib.nullcontext():
                    net.train_on_batch(x, y)  # trace / compile now (the concat form: traced with it)
                timers[name] = lambda net=net: net.train_on_batch(x, y)
                row.note = f"batch {b} x {p}x{p} LR patches in memory"
        except Exception as exc:  # noqa: BLE001
            row.available = False
            row.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            say(f"  {name}: unavailable ({row.reason})")
    return timers


# ---------------------------------------------------------------- run


def _fill(row: Row, samples: list[float], flops: float) -> None:
    med, best = statistics.median(samples), min(samples)
    row.samples_ms = [round(1e3 * t, 3) for t in samples]
    row.latency_ms = 1e3 * med
    row.best_ms = 1e3 * best
    row.gflops = flops / med / 1e9
    row.gflops_best = flops / best / 1e9


def _kind(name: str) -> str:
    if name in TRAIN_VARIANTS + TRAIN_DIAGNOSTICS:
        return "training"
    return "diagnostic" if name in DIAGNOSTIC_VARIANTS else "inference"


def run_benchmark(
    preset: str = "drn_x2",
    model_path=None,
    variants=ALL_VARIANTS,
    settings: Settings | None = None,
    progress=None,
) -> dict:
    """Measure everything; returns the JSON-able result dict (see :func:`to_markdown`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from drn_tf.models.analysis import count_macs, count_params, model_config

    settings = settings or Settings()
    say = progress or (lambda msg: None)
    unknown = [v for v in variants if v not in ALL_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(ALL_VARIANTS)}")
    t_start = time.perf_counter()
    info = machine_info()
    model, source = load_benchmark_model(preset, model_path)
    config = model_config(model)
    scale = int(config["scale"])
    h, w = settings.size
    macs = count_macs(config, h, w)
    out_mp = h * scale * w * scale / 1e6
    flops_inf = 2.0 * macs
    train_macs = count_macs(config, settings.train_patch, settings.train_patch) * settings.train_batch
    flops_train = 3 * 2.0 * train_macs
    rows = {name: Row(name, DESCRIPTIONS[name], _kind(name)) for name in variants}
    mm = {f"__matmul_{k}__": fn for k, fn in matmul_fns(settings.matmul_n).items()}
    mm_flops = 2.0 * settings.matmul_n**3
    peak_samples: dict[str, list[float]] = {k: [] for k in mm}
    int8_samples: list[float] = []
    int8_reason = "not measured (no inference variant selected)"
    pipe = None
    profiles = {}

    with tempfile.TemporaryDirectory(prefix="drn-benchmark-") as tmp:
        inf = [v for v in variants if v in INFERENCE_VARIANTS + DIAGNOSTIC_VARIANTS]
        if inf:
            say(f"inference, {h}x{w} input: preparing {len(inf)} variants")
            timers = _inference_timers(model, inf, (h, w), settings, rows, Path(tmp), say)
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
                _fill(rows[name], samples, flops_inf)
                rows[name].output_mp_per_s = out_mp / statistics.median(samples)
            if settings.profile and "keras-graph" in timers:
                say("profiling keras-graph ...")
                profiles["inference"] = summarise_profile(profile_ops(timers["keras-graph"]), flops_inf)
            del timers
        trn = [v for v in variants if v in TRAIN_VARIANTS + TRAIN_DIAGNOSTICS]
        if trn:
            say(f"training, batch {settings.train_batch} x {settings.train_patch}x{settings.train_patch}: preparing")
            timers = _training_timers(config, trn, settings, rows, say)
            n_train = len(timers)
            timers.update(mm)
            say(f"training: {n_train} variants + matmuls, {settings.train_warmup} warm-up + "
                f"{settings.train_runs} rounds")
            times = interleaved(timers, settings.train_runs, settings.train_warmup)
            for k in mm:
                peak_samples[k] += times.pop(k)
            for name, samples in times.items():
                _fill(rows[name], samples, flops_train)
                rows[name].patches_per_s = settings.train_batch / statistics.median(samples)
            pipe = pipeline_rate(scale, settings.train_patch, settings.train_batch)
            if settings.profile and "train-graph" in timers:
                say("profiling train-graph ...")
                profiles["training"] = summarise_profile(profile_ops(timers["train-graph"]), flops_train)
            del timers
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
            r.pct_peak = 100.0 * r.gflops / peak
            r.pct_peak_best = 100.0 * r.gflops_best / peak_best
    info["load_average_end"] = load_average()
    result = {
        "format": "drn_tf.bench.benchmark/1",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": info,
        "model": {
            "source": source,
            "trained": "trained" in source or bool(model_path),
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
        "goals": evaluate_goals(rows),
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    return result


def evaluate_goals(rows: dict) -> list[dict]:
    """The issue's three goals from the medians (``measured``), with the same
    figure from the fastest runs (``measured_best``) beside them."""

    def best(names, key):
        vals = [(getattr(rows[n], key), n) for n in names if n in rows and getattr(rows[n], key) is not None]
        return max(vals) if vals else (None, None)

    def goal(key, text, measured, measured_best, variant):
        target = GOALS[key]
        return {
            "goal": key,
            "text": text,
            "target": target,
            "measured": measured,
            "measured_best": measured_best,
            "variant": variant,
            "met": None if measured is None else measured >= target,
        }

    goals = []
    keras_pct, keras_name = best(("keras-graph", "keras-xla"), "pct_peak")
    keras_pct_best, _ = best(("keras-graph", "keras-xla"), "pct_peak_best")
    goals.append(goal(
        "keras_fp32_pct_peak",
        f"Keras fp32 inference >= {GOALS['keras_fp32_pct_peak']:.0f}% of the measured matmul peak",
        keras_pct, keras_pct_best, keras_name,
    ))
    keras_mp, keras_mp_name = best(("keras-eager", "keras-graph", "keras-xla"), "output_mp_per_s")
    keras_best, _ = best(("keras-eager", "keras-graph", "keras-xla"), "gflops_best")
    int8 = rows.get("tflite-int8")
    speedup = speedup_best = None
    if int8 is not None and int8.output_mp_per_s and keras_mp:
        speedup = int8.output_mp_per_s / keras_mp
        speedup_best = int8.gflops_best / keras_best
    goals.append(goal(
        "int8_speedup",
        f"TFLite int8 throughput >= {GOALS['int8_speedup']:.0f}x the Keras fp32 throughput (best Keras variant)",
        speedup, speedup_best, f"tflite-int8 / {keras_mp_name}" if speedup else None,
    ))
    train_pct, train_name = best(TRAIN_VARIANTS, "pct_peak")
    train_pct_best, _ = best(TRAIN_VARIANTS, "pct_peak_best")
    goals.append(goal(
        "train_pct_peak",
        f"training >= {GOALS['train_pct_peak']:.0f}% of the measured matmul peak (training FLOPs = 3 x forward)",
        train_pct, train_pct_best, train_name,
    ))
    return goals


# ---------------------------------------------------------------- report


def _f(v, fmt="{:.1f}", none="-"):
    return none if v is None else fmt.format(v)


def to_markdown(result: dict, explanations: dict | None = None) -> str:
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
        lines.append(
            f"| {r['name']} | {what} | {_f(r['latency_ms'])} | {_f(r['best_ms'])} | "
            f"{_f(r['output_mp_per_s'], '{:.3f}')} | {_f(r['patches_per_s'], '{:.2f}')} | {_f(r['gflops'])} | "
            f"{_f(r['pct_peak'])} | {_f(r['pct_peak_best'])} |"
        )
    lines += ["", "### Goals", ""]
    conditions = (mod.get("preset") or "model file", inp["height"], inp["width"], m["cores"])
    if conditions != ("drn_x2", 256, 256, 2):
        lines += [
            f"The goals are stated for drn_x2 at 256x256 on 2 cores; this run: {conditions[0]} at "
            f"{conditions[1]}x{conditions[2]} on {conditions[3]} cores.",
            "",
        ]
    lines += [
        "| goal | target | measured (medians) | best runs | met |",
        "|---|---:|---:|---:|---|",
    ]
    for g in result["goals"]:
        unit = "x" if g["goal"] == "int8_speedup" else "%"
        fmt = "{:.2f}" if unit == "x" else "{:.1f}"
        measured = "-" if g["measured"] is None else fmt.format(g["measured"]) + unit
        if g["variant"]:
            measured += f" ({g['variant']})"
        best = "-" if g.get("measured_best") is None else fmt.format(g["measured_best"]) + unit
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['text']} | {g['target']:g}{unit} | {measured} | {best} | {met} |")
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
    if explanations:
        lines += ["", "### Notes", ""]
        for key, text in explanations.items():
            lines.append(f"- **{key}**: {text}")
    lines.append("")
    return "\n".join(lines)


def write_json(result: dict, path) -> Path:
    from drn_tf.core.utils import write_atomic

    return write_atomic(path, json.dumps(result, indent=2, default=str) + "\n")


def write_text(text: str, path) -> Path:
    from drn_tf.core.utils import write_atomic

    return write_atomic(path, text)


def _row(result: dict, name: str) -> dict | None:
    for r in result["rows"]:
        if r["name"] == name and r["available"] and r["gflops"] is not None:
            return r
    return None


def _profile_text(p: dict | None, peak: float) -> str:
    if not p or not p.get("conv_ms"):
        return "no profile"
    others = ", ".join(f"{k} {v:.0f} ms" for k, v in p["top_ops_ms"] if not is_conv_op(k))[:200]
    if p.get("conv_gflops"):
        speed = f" and run at {p['conv_gflops']:.1f} GFLOP/s ({100 * p['conv_gflops'] / peak:.0f}% of the peak)"
    else:
        speed = " (convolutions ran concurrently on the inter-op threads, so no per-kernel speed)"
    return f"the convolutions take {p['conv_share_pct']:.0f}% of the op time{speed}; the rest is {others or 'nothing'}"


def _vs(a: dict, b: dict) -> str:
    """'a is N% faster/slower than b' on the medians, with the fastest runs beside."""
    med = 100 * (b["latency_ms"] / a["latency_ms"] - 1)
    best = 100 * (b["best_ms"] / a["best_ms"] - 1)
    return f"{med:+.1f}% throughput on the medians, {best:+.1f}% on the fastest runs"


def explain(result: dict) -> dict:
    """Notes for the report: per goal, the measured figure, the profile's
    explanation and (when not met) what would close the gap - all filled in
    from this run's numbers."""
    peak = result["peak"]["gflops"]
    prof = result.get("profiles") or {}
    goals = {g["goal"]: g for g in result["goals"]}
    notes = {}

    def head(g, unit):
        fmt = "{:.2f}" if unit == "x" else "{:.0f}"
        text = f"{fmt.format(g['measured'])}{unit} ({g['variant']}; fastest runs {fmt.format(g['measured_best'])}{unit})"
        return f"{text}, goal {g['target']:g}{unit}: " + ("met." if g["met"] else "**not met**.")

    g = goals["keras_fp32_pct_peak"]
    if g["measured"] is not None:
        body = f" Profile of one graph-mode run: {_profile_text(prof.get('inference'), peak)}."
        body += (
            " oneDNN runs every convolution as one `brg_conv_fwd` primitive with the bias and the LeakyReLU/ELU "
            "fused as post-ops (and the global skip as a sum post-op), so what is left around the convolutions is "
            "one Pad and one Add per residual distilling block."
        )
        graph, concat, xla = _row(result, "keras-graph"), _row(result, "keras-graph-concat"), _row(result, "keras-xla")
        if concat and graph:
            body += (
                " That block form, `y + pad(x)`, replaced the first form (`concat(y[..., :w] + x, y[..., w:])`, two "
                f"slices, an add and a concat; bit-identical results): the pad form gives {_vs(graph, concat)} "
                "against it in this run (`keras-graph-concat`)."
            )
        if xla and graph:
            body += f" XLA (`jit_compile=True`) against graph mode: {_vs(xla, graph)}" + (
                "; XLA is faster here, worth `jit_compile=True` in inference on this kind of machine."
                if xla["latency_ms"] < graph["latency_ms"] and xla["best_ms"] < graph["best_ms"]
                else "; it does not beat oneDNN's fused convolutions, so inference stays in graph mode."
            )
        if not g["met"]:
            body += (
                " Closing the gap needs faster convolution kernels rather than less overhead: e.g. oneDNN's bf16 "
                "math mode (`ONEDNN_DEFAULT_FPMATH_MODE=BF16` on CPUs with avx512_bf16/AMX; changes the numerics), "
                "or a quieter machine (the fastest runs show what the kernels do alone)."
            )
        notes["Keras fp32 inference"] = head(g, "%") + body

    g = goals["int8_speedup"]
    i8 = result.get("int8_peak") or {}
    int8 = _row(result, "tflite-int8")
    if g["measured"] is not None and int8:
        body = f" The int8 model runs at {int8['gflops']:.0f} GOP/s (fastest run {int8['gflops_best']:.0f})."
        if i8.get("gops"):
            k = i8["ratio_to_fp32_peak"]
            keras_frac = (goals["keras_fp32_pct_peak"]["measured"] or 100.0) / 100.0
            body += (
                f" The measured int8 peak (an XNNPACK int8 matrix product) is {i8['gops']:.0f} GOP/s = {k:.2f}x the "
                f"fp32 peak (fastest runs: {i8['ratio_to_fp32_peak_best']:.2f}x), so with Keras fp32 at "
                f"{100 * keras_frac:.0f}% of the fp32 peak, 4x needs the int8 model at "
                f"{100 * 4 * keras_frac / k:.0f}% of the int8 peak; it reaches {100 * int8['gflops'] / i8['gops']:.0f}%."
            )
        convs = _row(result, "tflite-int8-convs")
        conv_at_peak = None
        if convs:
            share = 100 * convs["latency_ms"] / int8["latency_ms"]
            conv_at_peak = convs["gflops"] / i8["gops"] if i8.get("gops") else None
            body += (
                f" The model's convolutions alone in int8 (`tflite-int8-convs`) take {convs['latency_ms']:.0f} ms "
                f"of its {int8['latency_ms']:.0f} ms ({share:.0f}%)"
                + (f" and reach {100 * conv_at_peak:.0f}% of the int8 peak" if conv_at_peak else "")
                + "; the rest is the LEAKY_RELU, ADD and PAD passes and the three ELUs (in int8: the int8 export "
                "replaces the converter's DEQUANTIZE / ELU / QUANTIZE round trips)."
            )
        if not g["met"]:
            if convs and conv_at_peak and conv_at_peak >= 0.9:
                body += (
                    " So the int8 convolutions already run at XNNPACK's int8 matrix peak: the gap is the ratio of "
                    "the two peaks against how well oneDNN does in fp32, plus the non-convolution passes. Without "
                    f"those passes the ratio would be {g['measured'] * int8['latency_ms'] / convs['latency_ms']:.2f}x. "
                    "What would close it: fusing LeakyReLU and the residual add into the int8 convolutions "
                    "(XNNPACK fuses only clamp-type activations into a convolution), or int8 kernels beyond "
                    "XNNPACK's (e.g. AMX on newer CPUs). Nothing on the model side can do it without changing the architecture (e.g. ReLU "
                    "for LeakyReLU/ELU), which the trained weights rule out; and the faster the fp32 baseline, the "
                    "harder a 4x ratio."
                )
            else:
                body += (
                    " What would close it: int8 3x3 convolution kernels nearer XNNPACK's own int8 matrix peak (these "
                    "are indirect GEMMs with only 64-128 output channels), fusing LeakyReLU and the residual add into "
                    "them (XNNPACK fuses only clamp-type activations). "
                    "Nothing on the model side can do it without changing the architecture, which the trained "
                    "weights rule out."
                )
        notes["TFLite int8 speed-up"] = head(g, "x") + body

    g = goals["train_pct_peak"]
    if g["measured"] is not None:
        body = f" Profile of one graph-mode step: {_profile_text(prof.get('training'), peak)}."
        tg, tx, tp = _row(result, "train-graph"), _row(result, "train-xla"), _row(result, "train-pipeline")
        tc = _row(result, "train-graph-concat")
        if tg and tc:
            body += (
                f" The `y + pad(x)` form of the residual distilling block against its first form (slices, add, "
                f"concat; `train-graph-concat`): {_vs(tg, tc)} - the gradients of the slices and the concat "
                "(StridedSliceGrad, Slice) are what it saves."
            )
        tb = _row(result, "train-bf16")
        if tg and tb:
            body += (
                f" The mixed_bfloat16 policy against float32 (`train-bf16`, not counted in the goal): {_vs(tb, tg)}"
                + (" - on a CPU with bf16 instructions `drn train --mixed-precision mixed_bfloat16` is the faster "
                   "way to train here." if tb["latency_ms"] < tg["latency_ms"] else " - slower on this CPU.")
            )
        if tg and tx:
            body += f" XLA against graph mode: {_vs(tx, tg)}" + (
                "; XLA is faster here." if tx["latency_ms"] < tg["latency_ms"] else
                "; the trainer's default (`jit_compile: auto`, XLA on GPU only) is right for CPUs."
            )
        pipe = result.get("input_pipeline_patches_per_s")
        if pipe and tg:
            body += (
                f" The input pipeline alone makes {pipe:.0f} patches/s against {tg['patches_per_s']:.1f} consumed"
                + (f"; with it feeding the steps (prefetch) training does {tp['patches_per_s']:.1f} patches/s, "
                   "so it costs nothing measurable." if tp else ".")
            )
        if not g["met"]:
            body += (
                " Closing it: the backward convolutions (`Conv2DBackpropFilter/Input`) are the cost; a larger batch "
                "or patch gives oneDNN larger problems; bf16 math mode would trade precision for speed."
            )
        notes["Training"] = head(g, "%") + body
    return notes
