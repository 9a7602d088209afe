"""The machine a measurement runs on: cores, load, versions; interleaved timing (so a load change on a
shared machine hits every variant alike); and its measured matrix-multiply peaks (fp32 in TensorFlow, int8 in
LiteRT), the references achieved GFLOP/s are put against."""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings

import numpy as np

from drn_tf.core.utils import cpu_flags, cpu_model


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
def quiet():
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
    with quiet():
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
