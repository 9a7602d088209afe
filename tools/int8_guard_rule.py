#!/usr/bin/env python
"""Replay the int8 saturation guard's rule (:mod:`drn_tf.inference.saturation`) on saved maps: which taps to
map, and which thresholds, for what loss and how much float work.

    DRN_DATA=../shared/data python tools/int8_guard_rule.py [PRESET ...] [--heldout 24] [--taps all,convs]
        [--thresholds 0.02,0.03] [--image-thresholds 0.003,0.005] [--image-shares 0.25,0.4] [--cache DIR]

Per preset (default: every bundled one), one int8 file from the bundled ranges with a saturation map of
*every* tap (not only the ones the shipped files map) runs once on each image: Set5, Set14, the 12 structure
images (:func:`drn_tf.core.patterns.structure_pairs`) and, with ``--heldout N``, ``N`` random structures and
``N`` Set14 photos (at most 14) with one pasted into a corner, as ``tools/int8_table.py`` makes them; the
float32 file runs on each too. Then, for each tap set (``all``: every tap but the input and the output, as
the earlier int8 files mapped, ``int8_table.every_tap_mapped``; ``convs``: the convolutions' outputs, what
the shipped files map, :func:`drn_tf.export.int8.saturation_taps`) and each threshold triple, the rule is
replayed on the saved maps without running a model again: the flagged rectangles take the float32 output
(exactly what the runtime pastes there), the rest the int8 output. Per variant it prints the Set5 and Set14
mean loss, the worst of the structure images, of the random ones and of the photos with a patch (loss: the
float32 file's PSNR minus the composite's, Y by the protocol; the float32 file equals Keras to about 1e-6), and
the share of the photos' pixels (Set5 + Set14) the float model ran on. The run-in-float decision per image
(``WHOLE``: crops with their context above 3/4 of the image) is the runtime's.
"""

import argparse
import itertools
import os
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from drn_tf.export.int8 import saturation_taps  # noqa: E402 (after the path)

TAP_SETS = {
    "all": list,  # every tap collected: all but the input and the output (int8_table.every_tap_mapped)
    "convs": saturation_taps,  # what the shipped files map
}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def collect(name: str, data: Path, heldout: int) -> dict:
    """``{"taps": names, "radius": r, "images": {key: {maps, err_int8, err_float, lr_shape}}}`` (the scale is
    the preset's): per image, the clipped-channel fraction per tap and block, and the squared Y error per block
    of the int8 and the float32 output (border pixels dropped)."""
    import numpy as np

    from drn_tf.core import patterns as P
    from drn_tf.core.metrics import rgb_to_y
    from drn_tf.core.protocol import read_benchmark
    from drn_tf.export.tflite import convert_tflite
    from drn_tf.inference import runtimes as R
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.inference.tiled import super_resolve
    from drn_tf.models.drn import DRN
    from int8_table import _mixed_pairs, every_tap_mapped

    model = DRN.from_preset(name)
    scale = model.get_config()["scale"]
    with every_tap_mapped():
        int8 = LiteRTRuntime(convert_tflite(model, "int8", int8_ranges=R.bundled_int8_ranges(model),
                                            saturation_maps=True), guard=False)
    float32 = LiteRTRuntime(convert_tflite(model, "float32"))
    taps = int8.metadata["saturation"]["taps"]
    map_outputs = int8.interpreter.get_output_details()[1:]  # after the image, in tap order
    pairs = []
    for set_name in ("Set5", "Set14"):
        bench = read_benchmark(data / "benchmark" / set_name, scale)
        pairs += [(f"{set_name}/{Path(p).stem}", lr, hr) for p, lr, hr in zip(bench.paths, bench.lrs, bench.hrs)]
    pairs += [(f"structure/{n}", lr, hr) for n, (lr, hr) in P.structure_pairs(scale).items()]
    if heldout:
        pairs += [(f"random/{n}", lr, hr) for n, (lr, hr) in P.random_structure_pairs(scale, heldout).items()]
        pairs += [(f"patched/{n}", lr, hr) for n, lr, hr in _mixed_pairs(data, scale, heldout)]
    block = 8 * scale
    images = {}
    for key, lr, hr in pairs:
        lr = np.asarray(lr)
        lr3 = np.repeat(lr, 3, axis=-1) if lr.ndim == 3 and lr.shape[-1] == 1 else lr
        y_int8 = super_resolve(int8, lr3, overlap=int8.overlap)
        maps = np.stack([(int8.interpreter.get_tensor(m["index"])[0] == 255).mean(-1) for m in map_outputs])
        y_float = super_resolve(float32, lr3, overlap=float32.overlap)
        hy = rgb_to_y(hr).astype(np.float64)

        def block_error(sr, hy=hy):
            e = (rgb_to_y(sr).astype(np.float64) - hy) ** 2
            e[:scale], e[-scale:], e[:, :scale], e[:, -scale:] = 0, 0, 0, 0
            hb, wb = -(-e.shape[0] // block), -(-e.shape[1] // block)
            padded = np.zeros((hb * block, wb * block))
            padded[: e.shape[0], : e.shape[1]] = e
            return padded.reshape(hb, block, wb, block).sum(axis=(1, 3))

        images[key] = {"maps": maps, "err_int8": block_error(y_int8), "err_float": block_error(y_float),
                       "lr_shape": lr3.shape[:2]}
    return {"taps": taps, "radius": int8.receptive_radius or int8.overlap, "images": images}


def replay(collected: dict, tap_set: str, threshold: float, image_threshold: float, image_share: float) -> dict:
    """``key -> (loss dB, LR pixels run in float, LR pixels)`` with the rule's thresholds set so."""
    import numpy as np

    from drn_tf.inference import saturation as S

    keep = set(TAP_SETS[tap_set](collected["taps"]))
    index = [i for i, n in enumerate(collected["taps"]) if n in keep]
    saved = S.THRESHOLD, S.IMAGE_THRESHOLD, S.IMAGE_SHARE
    S.THRESHOLD, S.IMAGE_THRESHOLD, S.IMAGE_SHARE = threshold, image_threshold, image_share
    out = {}
    try:
        for key, im in collected["images"].items():
            h, w = im["lr_shape"]
            scores = im["maps"][index].mean(axis=0)
            regions = S.float_plan(scores, 8, (h, w))
            crops = S.float_crops(regions, collected["radius"], (h, w))
            cover = np.zeros(im["err_int8"].shape, bool)
            if crops is None:  # one whole-image run
                cover[:], work = True, h * w
            else:
                work = sum((b - a) * (d - c) for a, b, c, d in crops)
                for r0, r1, c0, c1 in regions:
                    cover[r0 // 8 : -(-r1 // 8), c0 // 8 : -(-c1 // 8)] = True
            reference = im["err_float"].sum()
            composite = np.where(cover, im["err_float"], im["err_int8"]).sum()
            loss = 10 * np.log10(composite / reference) if reference > 0 else 0.0
            out[key] = (float(loss), work, h * w)
    finally:
        S.THRESHOLD, S.IMAGE_THRESHOLD, S.IMAGE_SHARE = saved
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="default: every bundled preset")
    parser.add_argument("--data", default=os.environ.get("DRN_DATA", "../shared/data"))
    parser.add_argument("--heldout", type=int, default=0, metavar="N")
    parser.add_argument("--taps", default="all,convs", help=f"tap sets, of {', '.join(TAP_SETS)}")
    parser.add_argument("--thresholds", default="0.03")
    parser.add_argument("--image-thresholds", default="0.003,0.005")
    parser.add_argument("--image-shares", default="0.25,0.4")
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="keep each preset's runs in DIR (a pickle per preset and --heldout) and reuse them")
    args = parser.parse_args(argv)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    import numpy as np

    from drn_tf.models.drn import bundled_model_path
    from drn_tf.models.presets import preset_names

    names = args.presets or [n for n in preset_names() if bundled_model_path(n) is not None]
    collected = {}
    for name in names:
        cached = Path(args.cache) / f"{name}-heldout{args.heldout}.pickle" if args.cache else None
        if cached is not None and cached.exists():
            collected[name] = pickle.loads(cached.read_bytes())
            continue
        print(f"{name}: running the int8 file with every tap mapped and the float32 file ...", file=sys.stderr, flush=True)
        collected[name] = collect(name, Path(args.data), args.heldout)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(pickle.dumps(collected[name]))
    groups = ("structure/", "random/", "patched/") if args.heldout else ("structure/",)
    print("| taps | threshold / image threshold / image share | preset | Set5 loss | Set14 loss | "
          + " | ".join(f"worst {g[:-1]}" for g in groups) + " | photos run in float |")
    print("|---|---|---|---:|---:|" + "---|" * len(groups) + "---:|")
    for tap_set, t, it, share in itertools.product(args.taps.split(","), _floats(args.thresholds),
                                                   _floats(args.image_thresholds), _floats(args.image_shares)):
        for name, c in collected.items():
            r = replay(c, tap_set, t, it, share)
            mean = lambda prefix: np.mean([v[0] for k, v in r.items() if k.startswith(prefix)])  # noqa: E731
            cells = []
            for g in groups:
                worst = max((v[0], k) for k, v in r.items() if k.startswith(g))
                cells.append(f"{worst[0]:.2f} ({worst[1][len(g):]})")
            photos = [v for k, v in r.items() if k.startswith("Set")]
            share_float = sum(v[1] for v in photos) / sum(v[2] for v in photos)
            print(f"| {tap_set} ({len(TAP_SETS[tap_set](c['taps']))}) | {t:g} / {it:g} / {share:g} | {name} | "
                  f"{mean('Set5/'):.3f} | {mean('Set14/'):.3f} | " + " | ".join(cells) + f" | {share_float:.1%} |",
                  flush=True)
    _misses(collected, args.taps.split(",")[-1], _floats(args.thresholds)[0], _floats(args.image_thresholds)[0],
            _floats(args.image_shares)[0])
    return 0


def _misses(collected: dict, tap_set: str, threshold: float, image_threshold: float, image_share: float) -> None:
    """The images other than Set5/Set14 still above 0.10 dB with the first variant of the last tap set: how much
    clipped there (the highest block score, and the share of blocks where any mapped channel clipped), the
    float model's PSNR, and the MSE the composite adds to the float model's (grey levels squared, Y) beside
    what it adds on the preset's photos: an image that gets no more than the photos do meets int8's rounding
    floor (no range or rule can lower it), one that gets more lost to clipping the maps did not flag (the low
    side, or blocks under the threshold). 0.10 dB allows an added MSE of 2.3 % of the float model's, which a PSNR of
    ``P`` dB puts at ``0.023 * 255**2 * 10**(-P/10)``: 0.1 at 45 dB."""
    import numpy as np

    def added_mse(im, loss, scale):
        """(the float model's MSE, the MSE the composite adds to it), per HR pixel (border included)."""
        h, w = im["lr_shape"]
        float_mse = im["err_float"].sum() / (h * w * scale**2)
        return float_mse, float_mse * (10 ** (loss / 10) - 1)

    print(f"\nimages above 0.10 dB with {tap_set} at {threshold:g} / {image_threshold:g} / {image_share:g}: the "
          "highest block score, the blocks where any mapped channel clipped, the float model's PSNR, and the MSE "
          "int8 adds to it (Y, grey levels squared) against what it adds on the preset's Set5 + Set14 photos\n")
    print("| preset | image | loss (dB) | int8 alone (dB) | highest block score | blocks with a clipped channel | "
          "float PSNR (dB) | added MSE | photos' added MSE, median / max | kind |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for name, c in collected.items():
        scale = _scale_of(name)
        keep = set(TAP_SETS[tap_set](c["taps"]))
        index = [i for i, n in enumerate(c["taps"]) if n in keep]
        losses = replay(c, tap_set, threshold, image_threshold, image_share)
        photos = [added_mse(c["images"][k], v[0], scale)[1] for k, v in losses.items() if k.startswith("Set")]
        floor = max(photos)
        for key, (loss, _, _) in losses.items():
            if key.startswith("Set") or loss <= 0.10:
                continue
            im = c["images"][key]
            maps = im["maps"][index]
            alone = 10 * np.log10(im["err_int8"].sum() / im["err_float"].sum())
            float_mse, added = added_mse(im, loss, scale)
            kind = "rounding floor" if added <= floor else "more than photos"
            print(f"| {name} | {key} | {loss:.2f} | {alone:.2f} | {maps.mean(axis=0).max():.4f} | "
                  f"{np.mean(maps.max(axis=0) > 0):.0%} | {10 * np.log10(255**2 / float_mse):.1f} | {added:.2f} | "
                  f"{np.median(photos):.2f} / {floor:.2f} | {kind} |")


def _scale_of(preset: str) -> int:
    from drn_tf.models.presets import get_preset

    return int(get_preset(preset)["config"]["scale"])


if __name__ == "__main__":
    sys.exit(main())
