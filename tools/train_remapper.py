"""Step time of ``drn train``'s train step with and without grappler's remapper (TensorFlow), interleaved.

    python tools/train_remapper.py [--policy float32|mixed_bfloat16] [--rounds 20] [--steps 3]
                                   [--batch-size 8] [--patch-size 32] [--preset drn_s_x2]

The same compiled ``model.train_function`` is called in alternating blocks of ``--steps`` steps under the
default grappler options and under :data:`drn_tf.train.loop.TRAIN_STEP_GRAPPLER` (each call carries its
options, so both optimised graphs live side by side). Prints the median step time of each (wall clock and
process CPU time) and the median of the per-round ratios (without / with), which a busy machine disturbs
least. Behind the figure in docs/training.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", default="float32")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=32)
    ap.add_argument("--preset", default="drn_s_x2")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from drn_tf.train.config import load_config, resolve_config
    from drn_tf.train.loop import TRAIN_STEP_GRAPPLER, grappler_options
    from drn_tf.train.recipe import build_model, build_schedule

    keras.config.set_dtype_policy(args.policy)
    cfg = resolve_config(load_config(overrides={"model": {"preset": args.preset},
                                                "train": {"batch_size": args.batch_size},
                                                "data": {"patch_size": args.patch_size}}))
    scale, n, p = cfg["model"]["scale"], args.batch_size, args.patch_size
    model = build_model(cfg, build_schedule(cfg), jit_compile=False)
    rng = np.random.default_rng(0)
    data = (rng.random((n, p, p, 3), np.float32), rng.random((n, p * scale, p * scale, 3), np.float32))
    iterator = iter(tf.data.Dataset.from_tensors(data).repeat())
    model.make_train_function()
    fn = model.train_function
    variants = {"default": {}, "no remapper": TRAIN_STEP_GRAPPLER}

    def block(name, steps):
        with grappler_options(variants[name]):
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps):
                out = fn(iterator)
            float(np.asarray(out["loss"]))  # waits for the last step
            return (time.perf_counter() - t) / steps, (time.process_time() - c) / steps

    for name in variants:  # optimise and warm both graphs first
        block(name, 2)
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for r in range(args.rounds):
        for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            w, c = block(name, args.steps)
            wall[name].append(w)
            cpu[name].append(c)
    print(f"{args.preset}, {args.policy}, batch {n}, patch {p}: {args.rounds} rounds of {args.steps} steps each")
    for name in variants:
        print(f"  {name:12s} step {np.median(wall[name]) * 1e3:8.1f} ms wall, {np.median(cpu[name]) * 1e3:8.1f} ms CPU")
    for what, d in (("wall", wall), ("CPU", cpu)):
        ratio = np.median(np.array(d["no remapper"]) / np.array(d["default"]))
        print(f"  without / with remapper ({what}, median of the rounds' ratios): {ratio:.3f}")


if __name__ == "__main__":
    main()
