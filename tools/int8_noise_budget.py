#!/usr/bin/env python
"""Where int8's rounding error comes from: per activation tap (and for the kernels' rounding), the error it
alone adds to the output, by simulation.

    DRN_DATA=../shared/data python tools/int8_noise_budget.py PRESET [IMAGE ...] [--top 6]
        [--float lfe,skip,body_end] [--data DIR]

``IMAGE``: a Set5 image (``bird``), one of the regular-structure images (``grating_v6``) or of the 24 held-out
random ones (``random_1000_13``); default: Set5 and the held-out ``random_1000_7``, ``_10``, ``_13``. The int8
graph (:class:`drn_tf.export.int8._QuantGraph`) runs in TensorFlow in float, then with one tap at a time
fake-quantized at the preset's bundled range (``assets/int8.json``), then with only the kernels rounded per
output channel to int8 (as the converter rounds them). Each run's output is compared with the float run's
before the final rounding to grey levels: mean squared difference of Y (the protocol's luma, 0-255 scale,
border pixels dropped). Rounding errors of different taps are independent, so their sum is close to the error
with every tap quantized at once, printed beside ("all at once"). The output tap's share is the rounding to
1/255 steps that the float model's 8-bit output gets anyway (about 0.03 level² in Y): not an error int8 adds.

A second table gives, per image, the float model's PSNR (Y, by the protocol, against the HR), the simulated int8
graph's loss, and its loss with the ``--float`` taps (default: the network's tail, ``lfe,skip,body_end``) left
in float: what keeping them in higher precision would buy. A last line gives the share of the multiply-adds
of the convolutions around the network's tail (the LFE, body_end and the upsampler).
"""

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_HELDOUT = ("random_1000_7", "random_1000_10", "random_1000_13")
TAIL = ("lfe", "body_end", "upsampler")  # the convolutions around the network's tail (analysis.layer_table rows)


def errors_alone(run, taps, reference, measure) -> dict:
    """``source -> error``: the mean squared difference from ``reference`` of ``measure(run(...))`` with one
    source of int8 rounding only, ``"kernels"`` (every kernel rounded) or one tap of ``taps`` fake-quantized.
    ``run(**kw)``: the output image of :meth:`int8_qat.TrainableGraph.forward` with those arguments."""
    def error(**kw):
        return float(np.mean((measure(run(quantize=False, **kw)) - reference) ** 2))

    return {"kernels": error(weights=True), **{tap: error(taps={tap}) for tap in taps}}


def _images(names, scale: int, data: Path) -> dict:
    """``name -> (LR, HR)`` uint8 for ``names`` (default: Set5 and :data:`DEFAULT_HELDOUT`)."""
    from drn_tf.core import patterns as P
    from drn_tf.core.protocol import read_benchmark

    bench = read_benchmark(data / "benchmark" / "Set5", scale)
    known = {Path(p).stem: (lr, hr) for p, lr, hr in zip(bench.paths, bench.lrs, bench.hrs)}
    known.update(P.structure_pairs(scale))
    known.update(P.random_structure_pairs(scale, 24))
    names = names or [*(Path(p).stem for p in bench.paths), *DEFAULT_HELDOUT]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown image(s) {', '.join(unknown)}; one of {', '.join(known)}")
    return {n: known[n] for n in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("images", nargs="*")
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--float", default="lfe,skip,body_end", help="taps kept in float in the second table")
    parser.add_argument("--data", default=os.environ.get("DRN_DATA", "../shared/data"))
    args = parser.parse_args(argv)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    import tensorflow as tf

    from drn_tf.core.metrics import _Y_WEIGHTS  # the protocol's luma weights (before its rounding)
    from drn_tf.core.metrics import psnr_y, to_uint8
    from drn_tf.export.int8 import tap_names
    from drn_tf.inference import runtimes as R
    from drn_tf.models.analysis import layer_table, model_config
    from drn_tf.models.drn import DRN
    from int8_qat import TrainableGraph

    model = DRN.from_preset(args.preset)
    scale = int(model.get_config()["scale"])
    ranges = R.bundled_int8_ranges(model)
    graph = TrainableGraph(model)
    names = tap_names(model)
    images = _images(args.images, scale, Path(args.data))

    kept = {t for t in args.float.split(",") if t}
    unknown = kept - set(names)
    if unknown:
        parser.error(f"unknown tap(s) {', '.join(sorted(unknown))}; the taps: {', '.join(names)}")

    def y_of(image):  # Y on the 0-255 scale, before rounding, border dropped
        return (image * 255.0 @ _Y_WEIGHTS)[scale:-scale, scale:-scale]

    def psnr(image, hr):
        return psnr_y(to_uint8(image), hr, scale)

    print(f"{args.preset}: Y error (grey levels², before rounding to 8 bits) each source of int8 rounding adds alone\n")
    print("| image | all at once | sum | sum without the output | largest: tap (share of the sum without the output) |")
    print("|---|---:|---:|---:|---|")
    losses = {}
    for name, (lr, hr) in images.items():
        x = tf.constant(lr[None].astype(np.float32) / 255.0)

        def run(**kw):
            return graph.forward(x, ranges, **kw)[0].numpy()

        float_out, int8_out = run(quantize=False), run(quantize=True)
        ref = y_of(float_out)
        every = float(np.mean((y_of(int8_out) - ref) ** 2))
        parts = errors_alone(run, names, ref, y_of)
        total = sum(parts.values())
        inner = total - parts["output"]
        top = sorted(((k, v) for k, v in parts.items() if k != "output"), key=lambda kv: -kv[1])[: args.top]
        print(f"| {name} | {every:.3f} | {total:.3f} | {inner:.3f} | "
              + ", ".join(f"{k} {v:.3f} ({v / inner:.0%})" for k, v in top) + " |", flush=True)
        base = psnr(float_out, hr)
        losses[name] = (base, base - psnr(int8_out, hr),
                        base - psnr(run(quantize=True, taps=set(names) - kept), hr), sum(parts[t] for t in kept) / inner)
    print(f"\n{args.preset}: simulated int8 loss (dB) with every tap quantized, and with {', '.join(sorted(kept))} "
          "in float\n")
    print("| image | float PSNR | int8 loss | with those in float | their share of the error |")
    print("|---|---:|---:|---:|---:|")
    for name, (base, every, mixed, share) in losses.items():
        print(f"| {name} | {base:.2f} | {every:.2f} | {mixed:.2f} | {share:.0%} |")
    macs = {row: m * area for row, _params, m, area in layer_table(model_config(model))}
    tail = sum(v for row, v in macs.items() if row.split("/")[0] in TAIL)
    print(f"\nthe LFE, body_end and upsampler convolutions: {tail / sum(macs.values()):.1%} of the multiply-adds "
          "per LR pixel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
