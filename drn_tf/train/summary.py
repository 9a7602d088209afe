"""What a run reports in ``run.json``: its set-up, its steps and throughput, its best validation, the
machine; and the yardstick of the throughput, :func:`jax_matmul_peak_tflops`.

The training FLOPs are counted where the model's architecture has a multiply-add table
(:func:`drn_tf.models.analysis.model_macs`); for another architecture they are None, and the run still
ends with every file written.
"""

from __future__ import annotations

import os
import platform
import time


def train_flops_per_patch(model, patch: int) -> int | None:
    """FLOPs of one training step on one LR patch: 3 x the forward pass (forward, two gradients), 2 FLOPs
    per multiply-add; None for a model without a multiply-add table."""
    from drn_tf.models.analysis import model_macs

    macs = model_macs(model, patch, patch)
    return None if macs is None else 6 * macs


def run_summary(cfg: dict, model, *, backend: str, distribution: str, replicas: int, loop: str, pipeline: str,
                steps: int, session_steps: int, fit_s: float, train_s: float, validation_s: float,
                checkpoint_s: float | None, wall_s: float, resumed: dict | None, best_psnr, best_epoch,
                val_sets, history: dict, accelerators) -> dict:
    """The ``run.json`` of a run (``train_s``: the epochs' time up to their last step: no validation, no
    saving; ``history``: the Keras History of the session, metric -> values)."""
    import keras

    t, batch, patch = cfg["train"], cfg["train"]["batch_size"], cfg["data"]["patch_size"]
    flops = train_flops_per_patch(model, patch)
    return {
        "preset": cfg["model"]["preset"],
        "scale": cfg["model"]["scale"],
        "params": int(model.count_params()),
        "backend": backend,
        "strategy": distribution,
        "replicas": replicas,
        "loop": "model.fit" if loop == "fit" else "strategy.run",
        "pipeline": pipeline,
        "dtype_policy": keras.config.dtype_policy().name,
        "steps": steps,
        "planned_steps": t["steps"],
        "minutes": t["minutes"],
        "patches_seen": steps * batch,
        "batch_size": batch,
        "patch_size": patch,
        "train_flops_per_patch": flops,
        "session_steps": session_steps,
        "session_fit_s": round(fit_s, 1),
        "session_train_s": round(train_s, 1),
        "session_validation_s": round(validation_s, 1),
        "session_checkpoint_s": None if checkpoint_s is None else round(checkpoint_s, 1),
        "patches_per_s": round(session_steps * batch / max(train_s, 1e-9), 2) if session_steps else None,
        "train_tflops": round(session_steps * batch * flops / max(train_s, 1e-9) / 1e12, 4)
        if session_steps and flops is not None else None,
        "wall_s": round(wall_s, 1),
        "resumed_from": resumed,
        "best_val_psnr": best_psnr,
        "best_epoch": best_epoch,
        "val_sets": {v.name: {"images": len(v.lrs), "bicubic_psnr": v.bicubic_psnr, "bicubic_ssim": v.bicubic_ssim}
                     for v in val_sets},
        "final": {k: (float(v[-1]) if len(v) else None) for k, v in history.items()},
        "host": platform.node(),
        "device": device_text(accelerators),
        "keras": keras.__version__,
        **framework_versions(backend),
    }


def device_text(accelerators) -> str:
    if not accelerators:
        return f"CPU ({os.cpu_count()} cores) {platform.processor() or platform.machine()}"
    kind = getattr(accelerators[0], "device_kind", None)
    return f"{len(accelerators)} GPU(s)" + (f" {kind}" if kind else "")


def framework_versions(backend: str) -> dict:
    if backend == "tensorflow":
        import tensorflow as tf

        return {"tensorflow": tf.__version__}
    if backend == "jax":
        import jax

        return {"jax": jax.__version__}
    return {}


def jax_matmul_peak_tflops(dtype: str = "bfloat16", n: int | None = None, repeats: int = 20) -> dict:
    """The matrix-multiply rate of JAX's default device: the fastest of ``repeats`` jitted ``n x n`` products
    (``2 n^3`` FLOPs) in ``dtype`` (``n``: 8192 on an accelerator, 1024 on a CPU). The reference a training
    rate (``run.json`` ``train_tflops``) is put against, measured in the same process on the same device."""
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    n = n or (8192 if device.platform != "cpu" else 1024)
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), dtype=jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), dtype=jnp.float32).astype(dtype)
    product = jax.jit(lambda x, y: x @ y)
    product(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        product(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"device": str(getattr(device, "device_kind", device.platform)), "dtype": dtype, "n": n,
            "tflops": 2 * n**3 / best / 1e12}
