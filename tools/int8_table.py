#!/usr/bin/env python
"""The int8 table of docs/export.md: per preset, the PSNR loss of the int8 TFLite model against its float
Keras model on Set5, Set14 and the regular-structure images (:mod:`drn_tf.core.patterns`), and the int8
speed-up over Keras fp32.

    DRN_DATA=../shared/data python tools/int8_table.py [PRESET ...] [--runs 8] [--warmup 2] [--size 256]
        [--heldout N] [--structure-weight W] [--plain-ranges] [--baseline INT8_JSON] [--speed-only]
        [--int8-weights KERAS]

PSNR by the protocol (Y, ``s`` border pixels dropped, set means; the structure images' LR is the
protocol's bicubic of the generated HR). The int8 model is the one ``--runtime litert-int8`` uses: the
export converted with the preset's bundled ranges (``assets/int8.json``), else calibrated on
``<DRN_DATA>/train``, with saturation maps, its clipped regions rerun by the float32 file
(:mod:`drn_tf.inference.saturation`; "run in float": the share of LR pixels that were); "int8 alone" is the
same file without that; ``--structure-weight W`` (and ``--plain-ranges``: pre-activation tensors' ranges by
their own error, not after the activation) calibrates on ``<DRN_DATA>/train`` with that recipe variant
instead (the trade-off table of docs/export.md). ``--baseline``: an ``int8.json`` of an earlier recipe
(``git show REV:assets/int8.json > old.json``), its ranges converted by today's graph (the same operators),
measured beside (its losses, and its speed in the same interleaved rounds). Speed: the centre
``size`` x ``size`` of ``assets/sample.jpg`` (a photo) through Keras fp32, the int8 runtime and int8 alone, and
``size`` x ``size`` stripes (period 8) through Keras and the int8 runtime, and the photo through the int8 file
without saturation maps (what the maps cost; ``--every-tap-maps``: the runtime's file maps every tap), timed in turn round after round (``--warmup`` + ``--runs`` each),
the ratio of the medians (and of the fastest runs); ``--speed-only`` prints only those. ``--int8-weights``: the
int8 files converted from that model's weights (a fine-tune of the preset for int8, ``tools/int8_qat.py``) with
the preset's ranges; the losses stay against the preset's float model.
Prints a Markdown table, then every structure image's loss per preset, with the guard and int8 alone.
"""

import argparse
import contextlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@contextlib.contextmanager
def every_tap_mapped():
    """Within: int8 exports with saturation maps map every tap but the input (exact in int8) and the output
    (clamped to [0, 1] by design: white is its top level), as the earlier int8 files did, instead of
    :func:`drn_tf.export.int8.saturation_taps`."""
    from drn_tf.export import int8 as EI

    shipped = EI.saturation_taps
    EI.saturation_taps = lambda names: [n for n in names if n not in ("input", "output")]
    try:
        yield
    finally:
        EI.saturation_taps = shipped


def _losses(keras_rt, lite_rt, pairs, scale, keras_psnr: dict):
    """``name -> Keras PSNR - int8 PSNR`` over ``(name, lr, hr)`` pairs; ``keras_psnr`` holds the Keras PSNRs
    (filled on first need: the runtimes compared share them)."""
    from drn_tf import upscale
    from drn_tf.core.metrics import psnr_y

    out = {}
    for name, lr, hr in pairs:
        if name not in keras_psnr:
            keras_psnr[name] = psnr_y(upscale(lr, model=keras_rt), hr, scale)
        out[name] = keras_psnr[name] - psnr_y(upscale(lr, model=lite_rt), hr, scale)
    return out


def _mixed_pairs(data: Path, scale: int, count: int) -> list:
    """``(name, LR, HR)``: Set14 photos with a random regular structure (a third of the shorter side) pasted
    into one corner of the HR, LR by the protocol: structure in a part of a photo."""
    import numpy as np

    from drn_tf.core import patterns as P
    from drn_tf.core.imresize import bicubic_degrade, modcrop
    from drn_tf.core.protocol import read_benchmark

    bench = read_benchmark(data / "benchmark" / "Set14", scale)
    rng = np.random.default_rng(7)
    out = []
    for i, (path, hr) in enumerate(zip(bench.paths, bench.hrs)):
        if i >= count:
            break
        hr = np.array(np.broadcast_to(hr.reshape(*hr.shape[:2], -1), (*hr.shape[:2], 3)), copy=True)
        side = (min(hr.shape[:2]) // 3) // (4 * scale) * (4 * scale)
        patch = P._random_structure(rng, max(side, 8 * scale))[: hr.shape[0], : hr.shape[1]]
        corner = int(rng.integers(0, 4))
        y = 0 if corner < 2 else hr.shape[0] - patch.shape[0]
        x = 0 if corner % 2 == 0 else hr.shape[1] - patch.shape[1]
        hr[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        hr = modcrop(hr, scale)
        out.append((f"{Path(path).stem}+patch", bicubic_degrade(hr, scale), hr))
    return out


def measure(name: str, data: Path, runs: int, warmup: int, size: int, weight=None, plain=False,
            baseline=None, heldout_count: int = 0, quality: bool = True, every_tap_maps: bool = False,
            int8_weights=None) -> dict:
    import numpy as np

    from drn_tf.bench.machine import interleaved
    from drn_tf.bench.runtime_table import sample_input
    from drn_tf.core import patterns as P
    from drn_tf.export import int8 as EI
    from drn_tf.export.tflite import convert_tflite
    from drn_tf.inference import runtimes as R
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.inference.runtime import KerasRuntime
    from drn_tf.models.drn import DRN, load_model

    model = DRN.from_preset(name)
    scale = model.get_config()["scale"]
    if weight is None and not plain:
        ranges = R.bundled_int8_ranges(model)
    else:
        EI.STRUCTURE_WEIGHT = EI.STRUCTURE_WEIGHT if weight is None else weight
        EI.ACTIVATION_AWARE = not plain
        ranges = EI.int8_ranges(model, EI.calibration_images(data / "train", scale=scale))
    # the int8 files' weights: the preset's, or a fine-tune of them for int8 (--int8-weights); losses are
    # against the preset's float model either way
    source = model if int8_weights is None else load_model(int8_weights)
    with every_tap_mapped() if every_tap_maps else contextlib.nullcontext():
        flat = convert_tflite(source, "int8", int8_ranges=ranges, saturation_maps=True)
    no_maps = LiteRTRuntime(convert_tflite(source, "int8", int8_ranges=ranges), guard=False)
    float_rt = LiteRTRuntime(convert_tflite(model, "float32"))
    keras_rt = KerasRuntime(model)
    # "": the litert-int8 runtime (clipped regions rerun by the float32 file); "alone_": the same file, int8 only
    models = {"": LiteRTRuntime(flat, fallback=lambda: float_rt), "alone_": LiteRTRuntime(flat, guard=False)}
    if baseline is not None:
        import json

        old = {k: tuple(v) for k, v in json.loads(Path(baseline).read_text())[name]["ranges"].items()}
        models["base_"] = LiteRTRuntime(convert_tflite(model, "int8", int8_ranges=old), guard=False)
    row = {"preset": name}
    if quality:
        _quality(row, models, keras_rt, data, scale, heldout_count)
    photo = sample_input((size, size))
    stripes = (P.stripes(8, size=size)[None] / 255.0).astype(np.float32)
    timers = {"keras": lambda: keras_rt.run_batch(photo), "int8": lambda: models[""].run_batch(photo),
              "alone": lambda: models["alone_"].run_batch(photo), "no_maps": lambda: no_maps.run_batch(photo),
              "keras_stripes": lambda: keras_rt.run_batch(stripes), "int8_stripes": lambda: models[""].run_batch(stripes)}
    if baseline is not None:
        timers["base"] = lambda: models["base_"].run_batch(photo)
    times = interleaved(timers, runs, warmup)
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: float(np.min(v)) for k, v in times.items()}
    row.update(ms=1000 * med["int8"], keras_ms=1000 * med["keras"], speedup=med["keras"] / med["int8"],
               speedup_best=best["keras"] / best["int8"], alone_speedup=med["keras"] / med["alone"],
               no_maps_speedup=med["keras"] / med["no_maps"], no_maps_speedup_best=best["keras"] / best["no_maps"],
               stripes_speedup=med["keras_stripes"] / med["int8_stripes"])
    if baseline is not None:
        row.update(base_speedup=med["keras"] / med["base"], base_speedup_best=best["keras"] / best["base"])
    return row


def _quality(row, models, keras_rt, data, scale, heldout_count) -> None:
    """The loss columns of ``row``: Set5, Set14, the structure images and the held-out ones, per runtime."""
    import numpy as np

    from drn_tf.core import patterns as P
    from drn_tf.core.protocol import read_benchmark

    structures = [(n, lr, hr) for n, (lr, hr) in P.structure_pairs(scale).items()]
    heldout = [(n, lr, hr) for n, (lr, hr) in P.random_structure_pairs(scale, heldout_count).items()]
    mixed = _mixed_pairs(data, scale, heldout_count)
    row["keras_psnr"] = {}
    for prefix, rt in models.items():
        photo_float = photo_pixels = 0
        for set_name in ("Set5", "Set14"):
            bench = read_benchmark(data / "benchmark" / set_name, scale)
            before = (rt.float_pixels, rt.pixels)
            row[prefix + set_name] = float(np.mean(list(_losses(keras_rt, rt, zip(bench.paths, bench.lrs, bench.hrs),
                                                                scale, row["keras_psnr"]).values())))
            photo_float += rt.float_pixels - before[0]
            photo_pixels += rt.pixels - before[1]
        before = (rt.float_pixels, rt.pixels)
        per = _losses(keras_rt, rt, structures, scale, row["keras_psnr"])
        row[prefix + "structures"], row[prefix + "per_image"] = float(np.mean(list(per.values()))), per
        row[prefix + "float_photos"] = photo_float / max(photo_pixels, 1)
        row[prefix + "float_structures"] = (rt.float_pixels - before[0]) / max(rt.pixels - before[1], 1)
        if heldout:
            row[prefix + "heldout"] = _losses(keras_rt, rt, heldout, scale, row["keras_psnr"])
            row[prefix + "mixed"] = _losses(keras_rt, rt, mixed, scale, row["keras_psnr"])


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
    parser.add_argument("--heldout", type=int, default=0, metavar="N",
                        help="also N random regular structures (other seeds than calibration's) and N Set14 photos "
                             "(at most 14) with one pasted into a corner: the worst loss of each")
    parser.add_argument("--speed-only", action="store_true", help="the timings only, no losses")
    parser.add_argument("--int8-weights", default=None, metavar="KERAS",
                        help="convert the int8 files from this model's weights (a fine-tune of the preset for int8, "
                             "tools/int8_qat.py) instead of the preset's; losses stay against the preset's float model")
    parser.add_argument("--every-tap-maps", action="store_true",
                        help="the int8 runtime's file with a saturation map of every tap but the input and the output "
                             "(as the earlier files had) instead of the convolutions' outputs only")
    args = parser.parse_args(argv)
    if args.int8_weights and len(args.presets) != 1:
        parser.error("--int8-weights: name the one preset those weights are a fine-tune of")
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    from drn_tf.models.drn import bundled_model_path
    from drn_tf.models.presets import preset_names

    names = args.presets or [n for n in preset_names() if bundled_model_path(n) is not None]
    rows = []
    if args.speed_only:
        print("| preset | int8 ms | × Keras fp32, median (best): int8 runtime | int8 alone | int8 without maps | "
              "× Keras on stripes |")
        print("|---|---:|---:|---:|---:|---:|")
    else:
        print("| preset | Set5 loss | Set14 loss | structures loss (mean / worst image) | run in float: photos / "
              "structures | int8 ms | × Keras fp32, median (best) | int8 alone: structures loss, × Keras | "
              "× Keras on stripes |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = measure(name, Path(args.data), args.runs, args.warmup, args.size, args.structure_weight, args.plain_ranges,
                    args.baseline, args.heldout, quality=not args.speed_only, every_tap_maps=args.every_tap_maps,
                    int8_weights=args.int8_weights)
        rows.append(r)
        if args.speed_only:
            print(f"| {name} | {r['ms']:.0f} | {r['speedup']:.2f} ({r['speedup_best']:.2f}) | {r['alone_speedup']:.2f} | "
                  f"{r['no_maps_speedup']:.2f} ({r['no_maps_speedup_best']:.2f}) | {r['stripes_speedup']:.2f} |",
                  flush=True)
            continue
        worst = max(r["per_image"], key=r["per_image"].get)
        print(f"| {name} | {r['Set5']:.3f} | {r['Set14']:.3f} | {r['structures']:.3f} / {r['per_image'][worst]:.2f} "
              f"({worst}) | {r['float_photos']:.1%} / {r['float_structures']:.0%} | {r['ms']:.0f} | "
              f"{r['speedup']:.2f} ({r['speedup_best']:.2f}) | {r['alone_structures']:.2f} dB, {r['alone_speedup']:.2f} | "
              f"{r['stripes_speedup']:.2f} |", flush=True)
        if args.baseline:
            bw = max(r["base_per_image"], key=r["base_per_image"].get)
            print(f"| {name}, baseline | {r['base_Set5']:.3f} | {r['base_Set14']:.3f} | {r['base_structures']:.3f} / "
                  f"{r['base_per_image'][bw]:.2f} ({bw}) | | {r['base_speedup']:.2f} ({r['base_speedup_best']:.2f}) |",
                  flush=True)
    if args.speed_only:
        return 0
    if args.heldout:
        print("\nheld-out images, the litert-int8 runtime: images within 0.10 dB, the worst loss (dB), its image and "
              "the image's Keras PSNR; int8 alone in brackets:\n")
        print("| preset | random structures | photos with a structure patch |")
        print("|---|---|---|")
        for r in rows:
            cells = []
            for key in ("heldout", "mixed"):
                losses, alone = r[key], r["alone_" + key]
                worst = max(losses, key=losses.get)
                within = sum(v <= 0.10 for v in losses.values())
                cells.append(f"{within}/{len(losses)} ({sum(v <= 0.10 for v in alone.values())}/{len(alone)}); "
                             f"{losses[worst]:.2f} {worst} at {r['keras_psnr'][worst]:.1f} dB ({max(alone.values()):.2f})")
            print(f"| {r['preset']} | " + " | ".join(cells) + " |")
    images = list(rows[0]["per_image"]) if rows else []
    for title, key in (("loss (dB) per structure image", "per_image"), ("int8 alone", "alone_per_image")):
        print(f"\n{title}:\n")
        print("| preset | " + " | ".join(images) + " |")
        print("|---|" + "---:|" * len(images))
        for r in rows:
            print(f"| {r['preset']} | " + " | ".join(f"{r[key][n]:.2f}" for n in images) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
