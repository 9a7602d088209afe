#!/usr/bin/env python
"""Which activation tap costs an image its int8 quality: the loss with every tap quantized, and with each
tap in turn left in float, by simulation.

    python tools/int8_tap_exact.py PRESET IMAGE [--top 8]

``IMAGE``: one of the regular-structure images (:func:`drn_tf.core.patterns.structure_pairs`, e.g.
``grating_v6``) or of the 24 held-out random ones (:func:`~drn_tf.core.patterns.random_structure_pairs`,
``random_1000_0`` .. ``random_1000_23``). The int8 graph (``drn_tf.export.int8._QuantGraph``) runs in TensorFlow with a
``fake_quant_with_min_max_vars`` at every tap at the preset's bundled range (``assets/int8.json``), which
simulates the int8 file's rounding and clipping (not its kernels' exact requantization, so the loss differs
from the TFLite file's by a few tenths of a dB); then once per tap with that tap left unquantized. Prints
the float and simulated int8 PSNR (Y, by the protocol) and the taps whose float-keeping lowers the loss
most, with their range and the values the image gives them: a tap whose values leave its range on one side
is where the image clips.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("image")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    import numpy as np
    import tensorflow as tf

    from drn_tf.core import patterns as P
    from drn_tf.core.metrics import psnr_y, to_uint8
    from drn_tf.export import int8 as EI
    from drn_tf.inference import runtimes as R
    from drn_tf.models.drn import DRN

    model = DRN.from_preset(args.preset)
    scale = model.get_config()["scale"]
    ranges = R.bundled_int8_ranges(model)
    pairs = {**P.structure_pairs(scale), **P.random_structure_pairs(scale, 24)}
    if args.image not in pairs:
        parser.error(f"unknown image {args.image!r}; one of {', '.join(pairs)}")
    lr, hr = pairs[args.image]
    graph = EI._QuantGraph(model)
    x = tf.constant((lr[None] / 255.0).astype(np.float32))
    seen = {}

    def psnr(exact=None) -> float:
        def hook(name, t):
            seen.setdefault(name, (float(tf.reduce_min(t)), float(tf.reduce_max(t))))
            if name == exact:
                return t
            lo, hi = ranges[name]
            return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

        return psnr_y(to_uint8(graph(x, hook).numpy()[0]), hr, scale)

    reference = psnr_y(to_uint8(graph(x).numpy()[0]), hr, scale)
    quantized = psnr(None)
    print(f"{args.preset} on {args.image}: float {reference:.2f} dB, int8 (simulated) {quantized:.2f} dB, "
          f"loss {reference - quantized:.2f} dB")
    rows = sorted((reference - psnr(name), name) for name in ranges if name != "input")
    print("\n| tap kept in float | loss (dB) | range | the image's values |\n|---|---:|---|---|")
    for loss, name in rows[: args.top]:
        lo, hi = ranges[name]
        print(f"| {name} | {loss:.2f} | {lo:.2f} .. {hi:.2f} | {seen[name][0]:.2f} .. {seen[name][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
