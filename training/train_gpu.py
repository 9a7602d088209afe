"""Time-budgeted training that needs no TensorFlow (for GPU machines with JAX).

Runs ``model.fit`` on any Keras backend with the pure-numpy pipeline of
``drn_tf.data`` (LR by the protocol's MATLAB bicubic), the paper's L1 loss,
Adam with a cosine learning rate over a wall-clock budget, protocol Y-PSNR on
a validation set after every few epochs, and writes to ``--out``:
``<preset>.weights.h5`` (best validation PSNR), ``<preset>.last.weights.h5``,
``<preset>.csv`` (the curve) and ``<preset>.json`` (config, steps, patches
seen, throughput, hardware). The weights load into the TensorFlow model with
``DRN.from_preset(preset, load_weights=False).load_weights(...)``.

Example (GPU machine, JAX backend)::

    KERAS_BACKEND=jax python training/train_gpu.py --preset drn_x2 \\
        --train ../shared/data/train --val ../shared/data/benchmark/Set5 \\
        --minutes 8 --out runs/gpu
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", required=True, help="preset name, e.g. drn_x2")
    p.add_argument("--train", nargs="+", required=True, help="HR training image folder(s)")
    p.add_argument("--val", nargs="+", required=True, help="validation image folder(s)")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patch", type=int, default=48, help="LR patch size")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--epoch-steps", type=int, default=250)
    p.add_argument("--val-every", type=int, default=2, help="validate every N epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-bfloat16", action="store_true")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="threads cutting patches ahead of the train step (keras PyDataset workers; 0: in the main thread, "
        "between steps, where a lone process on a fast GPU waits for it)",
    )
    p.add_argument("--init", help="weights to start from: .weights.h5 or .keras (mismatching layers skipped)")
    p.add_argument("--cache", default=None, help="LR cache folder")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import keras

    from drn_tf import DRN
    from drn_tf.data import PatchSampler, load_pairs, validation_pairs
    from drn_tf.presets import get_preset
    from drn_tf.train import ProtocolValidation, TimeBudget, atomic_save_weights, l1_loss

    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    if args.mixed_bfloat16:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    scale = get_preset(args.preset)["config"]["scale"]
    lrs, hrs, _ = load_pairs(args.train, scale, cache_dir=args.cache, min_lr_size=args.patch)
    vlrs, vhrs, _ = validation_pairs(args.val, scale)
    print(f"[data] {len(lrs)} training, {len(vlrs)} validation images, {time.monotonic() - t0:.1f}s", flush=True)
    sampler = PatchSampler(
        lrs,
        hrs,
        scale,
        patch_size=args.patch,
        batch_size=args.batch,
        steps_per_epoch=args.epoch_steps,
        seed=args.seed,
        **({"workers": args.workers, "use_multiprocessing": False, "max_queue_size": 4 * args.workers}
           if args.workers > 0 else {}),
    )
    model = DRN.from_preset(args.preset, load_weights=False)
    if args.init:
        model.load_weights(args.init, skip_mismatch=True)
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=l1_loss(), jit_compile=True)
    name = args.preset
    budget = TimeBudget(args.minutes * 60 - (time.monotonic() - t0), args.lr)
    val = ProtocolValidation(
        vlrs,
        vhrs,
        scale,
        every_epochs=args.val_every,
        csv_path=out / f"{name}.csv",
        best_path=out / f"{name}.weights.h5",
        patches_per_epoch=args.batch * args.epoch_steps,
    )
    t_fit = time.monotonic()
    history = model.fit(sampler, epochs=10**6, callbacks=[budget, val], verbose=2)
    fit_s = time.monotonic() - t_fit
    atomic_save_weights(model, out / f"{name}.last.weights.h5")
    epochs = len(history.history["loss"])
    steps = epochs * args.epoch_steps
    info = {
        "preset": name,
        "backend": keras.backend.backend(),
        "mixed_bfloat16": args.mixed_bfloat16,
        "args": vars(args),
        "epochs": epochs,
        "steps": steps,
        "patches_seen": steps * args.batch,
        "fit_seconds": round(fit_s, 1),
        "patches_per_s": round(steps * args.batch / fit_s, 1),
        "best_val_psnr": val.best,
        "final_loss": history.history["loss"][-1],
        "host": platform.node(),
        "device": _device_name(),
        "params": model.count_params(),
    }
    (out / f"{name}.json").write_text(json.dumps(info, indent=2))
    print("[done] " + json.dumps({k: info[k] for k in ("preset", "steps", "patches_per_s", "best_val_psnr")}), flush=True)
    return 0


def _device_name() -> str:
    try:
        import keras

        if keras.backend.backend() == "jax":
            import jax

            return str(jax.devices()[0].device_kind)
    except Exception:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
