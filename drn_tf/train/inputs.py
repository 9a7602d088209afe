"""What a run reads: the validation sets (whole images, by the evaluation protocol) and the training
stream of the input pipeline the run uses (:data:`PIPELINES`).

Every pipeline gives the same batches from the same global step (a batch is a pure function of the seed
and the step), so a run resumes with the same data and a checkpoint of one pipeline resumes on another:
``tf.data`` (:func:`drn_tf.data.tfdata.make_train_dataset`, split across the replicas with the input
context: each input pipeline makes only its own patches), ``numpy``
(:meth:`drn_tf.data.patches.PatchSampler.stream`, threads cutting patches ahead with ``data.workers``; no
TensorFlow), ``device`` (:class:`drn_tf.data.device.DeviceSampler`: the training set on the accelerator,
patches cut there by a jitted function).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ValSet:
    name: str
    lrs: list
    hrs: list
    bicubic_psnr: float = float("nan")
    bicubic_ssim: float = float("nan")


def load_val_set(folder, scale: int, degrade: str | None = None) -> ValSet:
    """Benchmark images by the protocol (:func:`drn_tf.core.protocol.read_benchmark`): HR modcropped; LR by
    MATLAB bicubic; grey images stay grey. Unreadable images and images too small for the evaluation
    are skipped with a warning naming each; a folder left with none raises ``FileNotFoundError``.
    ``degrade``: a degradation of the LR (``"jpeg:75"``, as ``drn evaluate --degrade``), for the model
    and the bicubic reference alike."""
    from drn_tf.core.degrade import parse_degradations
    from drn_tf.core.protocol import evaluate_set, read_benchmark, upscale_bicubic

    folder = Path(folder)
    bench = read_benchmark(folder, scale, on_error="skip", label=f"validation set {folder.name}")
    if not bench.lrs:
        raise FileNotFoundError(f"{folder}: no usable validation image ({'; '.join(bench.skipped)})")
    lrs = bench.lrs
    if degrade:
        (op,) = parse_degradations(degrade)
        lrs = [op(lr, key=str(i)) for i, lr in enumerate(lrs)]
    bicubic = evaluate_set(lambda lr: upscale_bicubic(lr, scale), lrs, bench.hrs, scale)
    return ValSet(folder.name, lrs, bench.hrs, *bicubic)


def describe_degradation(degrade) -> str | None:
    """One log line for a :class:`drn_tf.core.degrade.TrainDegradation` in use, else None."""
    if not degrade.enabled:
        return None
    return (f"degraded LR for {degrade.prob:.0%} of the patches: {degrade.pool} copies of each image, JPEG "
            f"quality {degrade.jpeg_quality[0]}-{degrade.jpeg_quality[1]}"
            + (f", noise sigma {degrade.noise_sigma[0]:g}-{degrade.noise_sigma[1]:g} on {degrade.noise_prob:.0%}"
               if degrade.noise_prob > 0 else ""))


@dataclass
class StreamSpec:
    """What every pipeline needs: the training pairs, the patch stream's settings, where it starts."""

    lrs: list
    hrs: list
    scale: int
    patch_size: int
    batch_size: int
    epoch_steps: int
    seed: int
    augment: bool
    degrade: object  # a TrainDegradation
    start_step: int
    workers: int = 0


def _tf_data(spec: StreamSpec, dist, log):
    from drn_tf.data.tfdata import make_train_dataset

    def dataset_fn(ctx):
        return make_train_dataset(
            None, spec.scale, patch_size=spec.patch_size, batch_size=spec.batch_size,
            steps_per_epoch=spec.epoch_steps, seed=spec.seed, augment=spec.augment,
            start_step=spec.start_step * dist.local_replicas, input_context=ctx, pairs=(spec.lrs, spec.hrs),
            degrade=spec.degrade,
        )

    return dist.strategy.distribute_datasets_from_function(dataset_fn)


def _device(spec: StreamSpec, dist, log):
    """Patches cut on the accelerator; batch g a function of (seed, g)."""
    from drn_tf.data.device import DeviceSampler

    sampler = DeviceSampler(spec.lrs, spec.hrs, spec.scale, patch_size=spec.patch_size, batch_size=spec.batch_size,
                            seed=spec.seed, augment=spec.augment, degrade=spec.degrade)
    log(f"[data] training set on the device: {sampler.nbytes / 1e6:.0f} MB of uint8")
    return sampler.stream(spec.start_step)


def _numpy(spec: StreamSpec, dist, log):
    """The same batches as the tf.data stream, from the same global step."""
    from drn_tf.data.patches import PatchSampler

    sampler = PatchSampler(spec.lrs, spec.hrs, spec.scale, patch_size=spec.patch_size, batch_size=spec.batch_size,
                           steps_per_epoch=spec.epoch_steps, seed=spec.seed, augment=spec.augment,
                           degrade=spec.degrade)
    return sampler.stream(spec.start_step, workers=spec.workers)


# data.pipeline -> (spec, distribution, log) -> the training stream
PIPELINES = {"tf.data": _tf_data, "numpy": _numpy, "device": _device}


def training_stream(pipeline: str, spec: StreamSpec, dist, log):
    """The training batches of ``pipeline`` from ``spec.start_step`` (``dist``: the run's
    :class:`drn_tf.train.placement.Distribution`; ``log``: one-line messages)."""
    return PIPELINES[pipeline](spec, dist, log)
