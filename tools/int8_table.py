#!/usr/bin/env python
"""The int8 table of docs/export.md: per preset, the PSNR loss of the int8 TFLite model against its float
Keras model on Set5, Set14 and the regular-structure images (:mod:`drn_tf.core.patterns`), and the int8
speed-up over Keras fp32.

    DRN_DATA=../shared/data python tools/int8_table.py [PRESET ...] [--runs 8] [--warmup 2] [--size 256]
        [--structure-weight W] [--plain-ranges] [--baseline INT8_JSON]

PSNR by the protocol (Y, ``s`` border pixels dropped, set means; the structure images' LR is the
protocol's bicubic of the generated HR). The int8 model is the one ``--runtime litert-int8`` uses: the
export converted with the preset's bundled ranges (``assets/int8.json``), else calibrated on
``<DRN_DATA>/train``; ``--structure-weight W`` (and ``--plain-ranges``: pre-activation tensors' ranges by
their own error, not after the activation) calibrates on ``<DRN_DATA>/train`` with that recipe variant
instead (the trade-off table of docs/export.md). ``--baseline``: an ``int8.json`` of an earlier recipe
(``git show REV:assets/int8.json > old.json``), its ranges converted by today's graph (the same operators),
measured beside (its losses, and its speed in the same interleaved rounds). Speed: one ``size`` x ``size`` input through Keras fp32 and the int8 model, timed in
turn round after round (``--warmup`` + ``--runs`` each), the ratio of the medians (and of the fastest runs).
Prints a Markdown table, then every structure image's loss per preset.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _losses(keras_rt, lite_rt, pairs, scale):
    """``name -> Keras PSNR - int8 PSNR`` over ``(name, lr, hr)`` pairs."""
    from drn_tf import upscale
    from drn_tf.core.metrics import psnr_y

    return {name: psnr_y(upscale(lr, model=keras_rt), hr, scale) - psnr_y(upscale(lr, model=lite_rt), hr, scale)
            for name, lr, hr in pairs}


def measure(name: str, data: Path, runs: int, warmup: int, size: int, weight=None, plain=False,
            baseline=None) -> dict:
    import numpy as np

    from drn_tf.bench.machine import interleaved
    from drn_tf.core.patterns import structure_pairs
    from drn_tf.core.protocol import read_benchmark
    from drn_tf.export.tflite import convert_tflite
    from drn_tf.inference import runtimes as R
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.inference.runtime import KerasRuntime
    from drn_tf.models.drn import DRN

    model = DRN.from_preset(name)
    scale = model.get_config()["scale"]
    if weight is None and not plain:
        ranges = R.bundled_int8_ranges(model)
    else:
        from drn_tf.export import int8 as EI

        EI.STRUCTURE_WEIGHT = EI.STRUCTURE_WEIGHT if weight is None else weight
        EI.ACTIVATION_AWARE = not plain
        ranges = EI.int8_ranges(model, EI.calibration_images(data / "train", scale=scale))
    flat = convert_tflite(model, "int8", int8_ranges=ranges)
    keras_rt, lite_rt = KerasRuntime(model), LiteRTRuntime(flat)
    row = {"preset": name}
    models = {"": lite_rt}
    if baseline is not None:
        import json

        old = {k: tuple(v) for k, v in json.loads(Path(baseline).read_text())[name]["ranges"].items()}
        models["base_"] = LiteRTRuntime(convert_tflite(model, "int8", int8_ranges=old))
    for prefix, rt in models.items():
        for set_name in ("Set5", "Set14"):
            bench = read_benchmark(data / "benchmark" / set_name, scale)
            row[prefix + set_name] = float(np.mean(list(_losses(keras_rt, rt, zip(bench.paths, bench.lrs, bench.hrs),
                                                                scale).values())))
        per = _losses(keras_rt, rt, [(n, lr, hr) for n, (lr, hr) in structure_pairs(scale).items()], scale)
        row[prefix + "structures"], row[prefix + "per_image"] = float(np.mean(list(per.values()))), per
    x = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    timers = {"keras": lambda: keras_rt.run_batch(x), "int8": lambda: lite_rt.run_batch(x)}
    if baseline is not None:
        timers["base"] = lambda: models["base_"].run_batch(x)
    times = interleaved(timers, runs, warmup)
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: float(np.min(v)) for k, v in times.items()}
    row.update(ms=1000 * med["int8"], keras_ms=1000 * med["keras"], speedup=med["keras"] / med["int8"],
               speedup_best=best["keras"] / best["int8"])
    if baseline is not None:
        row.update(base_speedup=med["keras"] / med["base"], base_speedup_best=best["keras"] / best["base"])
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="default: every bundled preset")
    parser.add_argument("--data", default=os.environ.get("DRN_DATA", "../shared/data"))
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--structure-weight", type=float, default=None)
    parser.add_argument("--plain-ranges", action="store_true")
    parser.add_argument("--baseline", default=None, help="an int8.json of an earlier recipe, measured beside")
    args = parser.parse_args(argv)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    from drn_tf.models.drn import bundled_model_path
    from drn_tf.models.presets import preset_names

    names = args.presets or [n for n in preset_names() if bundled_model_path(n) is not None]
    print("| preset | Set5 loss | Set14 loss | structures loss (mean / worst image) | int8 ms | × Keras fp32, median (best) |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name in names:
        r = measure(name, Path(args.data), args.runs, args.warmup, args.size, args.structure_weight, args.plain_ranges,
                    args.baseline)
        rows.append(r)
        worst = max(r["per_image"], key=r["per_image"].get)
        print(f"| {name} | {r['Set5']:.3f} | {r['Set14']:.3f} | {r['structures']:.3f} / {r['per_image'][worst]:.2f} "
              f"({worst}) | {r['ms']:.0f} | {r['speedup']:.2f} ({r['speedup_best']:.2f}) |", flush=True)
        if args.baseline:
            bw = max(r["base_per_image"], key=r["base_per_image"].get)
            print(f"| {name}, baseline | {r['base_Set5']:.3f} | {r['base_Set14']:.3f} | {r['base_structures']:.3f} / "
                  f"{r['base_per_image'][bw]:.2f} ({bw}) | | {r['base_speedup']:.2f} ({r['base_speedup_best']:.2f}) |",
                  flush=True)
    print("\nloss (dB) per structure image:\n")
    images = list(rows[0]["per_image"]) if rows else []
    print("| preset | " + " | ".join(images) + " |")
    print("|---|" + "---:|" * len(images))
    for r in rows:
        print(f"| {r['preset']} | " + " | ".join(f"{r['per_image'][n]:.2f}" for n in images) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
