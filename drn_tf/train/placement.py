"""Where a run computes and what that decides.

:func:`distribute` makes the distribution: on TensorFlow a ``tf.distribute`` strategy (several GPUs ->
``MirroredStrategy``; a ``TF_CONFIG`` naming several workers -> ``MultiWorkerMirroredStrategy``; else the
default strategy), on JAX ``keras.distribution.DataParallel`` over several local devices. The model and
optimizer are built in its scope and the global batch is split across its replicas.

:func:`decide` then takes every decision that depends on the machine -- input pipeline, training loop, XLA,
dtype policy (:func:`mixed_precision_policy`), TensorBoard -- and every check of the config against it, in
one function of plain facts (:class:`Machine`: backend, accelerators, replicas, ...), so it is tested with
made-up device lists.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from drn_tf.train.config import ConfigError

# ------------------------------------------------------------------ the machine, as facts


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def _list_gpus_quietly():
    """``tf.config.list_physical_devices("GPU")`` (does not initialise the runtime, so a
    MultiWorkerMirroredStrategy can still be made) with the CUDA probe's stderr chatter on
    machines without a GPU silenced (``DRN_VERBOSE=1`` shows it)."""
    import tensorflow as tf

    from drn_tf.core.utils import quiet_stderr

    with quiet_stderr():
        return tf.config.list_physical_devices("GPU")


def accelerators(backend: str) -> list:
    """GPUs (TPUs) of ``backend``, without initialising TensorFlow's runtime."""
    if backend == "tensorflow":
        return _list_gpus_quietly()
    if backend == "jax":
        import jax

        return [d for d in jax.devices() if d.platform != "cpu"]
    return []


def tensorflow_importable(backend: str) -> bool:
    import importlib.util

    return backend == "tensorflow" or importlib.util.find_spec("tensorflow") is not None


@dataclass(frozen=True)
class Machine:
    """What :func:`decide` needs to know of the machine."""

    backend: str
    accelerators: list
    replicas: int = 1
    multi_worker: bool = False
    tensorflow_importable: bool = True
    cpu_flags: list | None = None  # None: this machine's (/proc/cpuinfo)


# ------------------------------------------------------------------ the decisions


def mixed_precision_policy(setting, have_gpu: bool, cpu_flags=None) -> tuple[str, str | None]:
    """The dtype policy for ``train.mixed_precision`` and, for ``true``, why that one.

    ``true`` means "the fast one here": mixed_float16 on a GPU, mixed_bfloat16 on a CPU with native
    bf16 (AVX512-BF16/AMX: 1.9x the float32 training speed on the 2-core AMD EPYC of the README), and
    float32 on other CPUs (bf16 without hardware support is emulated and slower). A policy name is
    used as given."""
    if not setting:
        return "float32", None
    if setting is not True:
        return str(setting), None
    if have_gpu:
        return "mixed_float16", None
    from drn_tf.core.utils import cpu_has_bf16

    if cpu_has_bf16(cpu_flags):
        return "mixed_bfloat16", "no GPU; this CPU has bf16 instructions, training in mixed_bfloat16"
    return "float32", "no GPU and no bf16 instructions on this CPU, training in float32"


@dataclass(frozen=True)
class Decisions:
    """How a run trains on its machine."""

    pipeline: str  # tf.data | numpy | device
    loop: str  # fit (model.fit) | custom (strategy.run loop)
    jit_compile: bool
    steps_per_execution: int
    policy: str  # the global dtype policy while training
    tensorboard: bool
    notes: tuple = ()  # log lines: why the policy, why no TensorBoard


def decide(cfg: dict, machine: Machine) -> Decisions:
    """The decisions of a resolved config on ``machine``; :class:`ConfigError` for what cannot run there."""
    backend, t = machine.backend, cfg["train"]
    on_tf, notes = backend == "tensorflow", []
    pipeline = cfg["data"]["pipeline"]
    if pipeline == "auto":
        pipeline = "tf.data" if on_tf else "numpy"
    if pipeline == "tf.data" and not on_tf:
        raise ConfigError(f"data.pipeline tf.data needs the TensorFlow backend (this is {backend}); use numpy")
    if pipeline == "device" and backend != "jax":
        raise ConfigError(f"data.pipeline device needs the JAX backend (this is {backend}); use "
                          f"{'tf.data' if on_tf else 'numpy'}")
    if pipeline == "numpy" and machine.multi_worker:
        raise ConfigError("data.pipeline numpy does not shard across workers; use tf.data under multi-worker")
    if t["minutes"] is not None and machine.multi_worker:
        raise ConfigError("train.minutes is not supported under multi-worker (each worker would fit its own step "
                          "count); set train.steps")
    policy, why = mixed_precision_policy(t["mixed_precision"], bool(machine.accelerators), machine.cpu_flags)
    if why:
        notes.append(f"--mixed-precision: {why}")
    if t["batch_size"] % machine.replicas:
        raise ConfigError(f"train.batch_size {t['batch_size']} is not a multiple of the {machine.replicas} replicas")
    loop = t["loop"]
    if loop == "auto":
        loop = "custom" if machine.multi_worker else "fit"
    if loop == "custom" and not on_tf:
        raise ConfigError(f"train.loop custom is the tf.distribute loop; on {backend} use fit (or auto)")
    jit = t["jit_compile"]
    if jit == "auto":
        jit = bool(machine.accelerators) or not on_tf  # JAX without jit runs op by op
    tensorboard = t["tensorboard"] is not False
    if tensorboard and not machine.tensorflow_importable:
        if t["tensorboard"] is True:
            raise ConfigError("train.tensorboard is true but TensorFlow is not importable here "
                              "(TensorBoard logs need its summary writer)")
        tensorboard = False
        notes.append("TensorBoard logs off: TensorFlow is not importable here (history.csv has the curves)")
    return Decisions(pipeline, loop, jit, t["steps_per_execution"] if loop == "fit" else 1, policy, tensorboard,
                tuple(notes))


# ------------------------------------------------------------------ the distribution


@dataclass
class Distribution:
    """The distribution a run trains under."""

    strategy: object  # a tf.distribute.Strategy, a keras.distribution.DataParallel, or None
    name: str  # default | MirroredStrategy | MultiWorkerMirroredStrategy | DataParallel
    replicas: int
    local_replicas: int  # the replicas this process's input pipeline feeds
    chief: bool  # the one process that writes files
    multi_worker: bool
    scope: Callable  # () -> the context the model is built in


def distribute(backend: str, strategy="auto", cpu_replicas: int = 0, *, batch_size: int,
               deterministic: bool = False) -> Distribution:
    """The distribution of a run (``strategy``: auto | default | mirrored | multi-worker, or a
    ``tf.distribute.Strategy``). On JAX the distribution is set globally (the caller restores it)."""
    if backend == "tensorflow":
        return _tf_distribution(strategy, cpu_replicas, deterministic)
    if strategy not in ("auto", "default", None):
        raise ConfigError(f"--strategy {strategy} is a tf.distribute strategy; on {backend} the local devices "
                          "are used with keras.distribution.DataParallel")
    if cpu_replicas and cpu_replicas > 1:
        raise ConfigError(f"--cpu-replicas splits TensorFlow's CPU; on {backend} start with "
                          f"XLA_FLAGS=--xla_force_host_platform_device_count={cpu_replicas} instead")
    dist = jax_distribution(batch_size) if backend == "jax" else None
    if dist is None:
        return Distribution(None, "default", 1, 1, True, False, contextlib.nullcontext)
    import keras

    keras.distribution.set_distribution(dist)
    replicas = len(dist.device_mesh.devices.flatten())
    return Distribution(dist, "DataParallel", replicas, replicas, True, False, contextlib.nullcontext)


def _tf_distribution(strategy, cpu_replicas: int, deterministic: bool) -> Distribution:
    import tensorflow as tf

    if cpu_replicas and cpu_replicas > 1:
        configure_cpu_replicas(cpu_replicas)
    # The strategy first: MultiWorkerMirroredStrategy must exist before the runtime initialises.
    if isinstance(strategy, str):
        strategy = pick_strategy(strategy, cpu_replicas)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    multi, replicas = is_multi_worker(strategy), strategy.num_replicas_in_sync
    local = len(strategy.extended.worker_devices) if multi else replicas
    return Distribution(strategy, strategy_name(strategy), replicas, local, is_chief(strategy), multi,
                        strategy.scope)


def jax_distribution(batch: int):
    """``keras.distribution.DataParallel`` over the local devices when there are several, else None.
    Raises :class:`ConfigError` when the global batch does not split evenly across them."""
    import keras

    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return None
    if batch % len(devices):
        raise ConfigError(f"train.batch_size {batch} is not a multiple of the {len(devices)} devices")
    return keras.distribution.DataParallel(devices=devices)


def configure_cpu_replicas(n: int) -> None:
    """Split the CPU into ``n`` logical devices (before TensorFlow initialises), for MirroredStrategy tests."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)])


def cluster_workers() -> int:
    """Number of tasks (chief + workers) named by ``TF_CONFIG`` (0 without it)."""
    try:
        spec = json.loads(os.environ.get("TF_CONFIG", "") or "{}").get("cluster", {})
    except ValueError:
        return 0
    return len(spec.get("chief", [])) + len(spec.get("worker", []))


def pick_strategy(kind: str = "auto", cpu_replicas: int = 0):
    """auto: TF_CONFIG with several workers -> MultiWorkerMirrored; several GPUs (or
    ``cpu_replicas`` > 1 logical CPUs) -> Mirrored; else the default strategy."""
    import tensorflow as tf

    gpus = _list_gpus_quietly()
    if kind == "auto":
        if cluster_workers() > 1:
            kind = "multi-worker"
        elif len(gpus) > 1 or cpu_replicas > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if kind == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {kind!r}")


def strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default"


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def is_chief(strategy) -> bool:
    """True on the one task that writes files: the chief, or worker 0 when the cluster has no chief."""
    if not is_multi_worker(strategy):
        return True
    r = strategy.cluster_resolver
    if r.task_type == "chief":
        return True
    has_chief = "chief" in r.cluster_spec().as_dict()
    return r.task_type == "worker" and int(r.task_id) == 0 and not has_chief


def check_workers_agree(strategy, start_epoch: int) -> None:
    """Every worker must resume from the same epoch (the run directory must be shared);
    raises :class:`ConfigError` on all workers otherwise, instead of a collective hang later."""
    import tensorflow as tf

    value = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([float(start_epoch)], tf.float32))
    seen = np.asarray(strategy.gather(value, axis=0))
    if seen.min() != seen.max():
        raise ConfigError(f"the workers found different checkpoints to resume from (epochs {sorted({int(x) for x in seen.tolist()})}); "
                          "all workers need the same run directory (a shared file system)")
