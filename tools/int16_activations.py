#!/usr/bin/env python
"""Would wider activations lift int8's rounding floor? LiteRT's 16x8 mode (int16 activations, int8 weights)
against the int8 file ``--runtime litert-int8`` runs, on the held-out random structures where int8 loses
most with no clipping, and its speed.

    DRN_DATA=../shared/data python tools/int16_activations.py [PRESET] [--images random_1000_7,...]
        [--runs 3] [--size 256]

The 16x8 file is the TFLite converter's (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``,
with plain float kernels for the operators it has no 16x8 kernel for: ELU, the pixel shuffle), calibrated by
min-max on the int8 calibration crops; the int8 file is the bundled ranges' without saturation maps (int8
alone). Prints, for those images and Set5, each image's Keras PSNR, both files' losses (Y, by the protocol) and
how far each file's 8-bit RGB output is from Keras's (RMS over the pixels and channels), then the median time of
Keras fp32, the int8 file and the 16x8 file on the centre ``size`` x ``size`` of ``assets/sample.jpg``, timed in
turn (2 threads).
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def int16x8_file(model, samples) -> bytes:
    """``model`` converted to a 16x8 TFLite flatbuffer, calibrated on ``samples`` (float32 HWC crops)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    def forward(x):
        return model(x, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([s[None]] for s in samples)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,  # float kernels where 16x8 has none
    ]
    return converter.convert()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", default="drn_s_x2")
    parser.add_argument("--data", default=os.environ.get("DRN_DATA", "../shared/data"))
    parser.add_argument("--images", default="random_1000_7,random_1000_10,random_1000_13",
                        help="held-out random structures (drn_tf.core.patterns.random_structure_pairs, 24 of them)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    import numpy as np

    from drn_tf import upscale
    from drn_tf.bench.machine import interleaved
    from drn_tf.bench.runtime_table import sample_input
    from drn_tf.core import patterns as P
    from drn_tf.core.metrics import psnr_y
    from drn_tf.core.protocol import read_benchmark
    from drn_tf.export import int8 as EI
    from drn_tf.export.tflite import convert_tflite
    from drn_tf.inference import runtimes as R
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.inference.runtime import KerasRuntime
    from drn_tf.models.drn import DRN

    model = DRN.from_preset(args.preset)
    scale = model.get_config()["scale"]
    held_out = P.random_structure_pairs(scale, 24)
    unknown = [n for n in args.images.split(",") if n not in held_out]
    if unknown:
        parser.error(f"unknown image(s) {', '.join(unknown)}; one of {', '.join(held_out)}")
    keras_rt = KerasRuntime(model)
    int8 = LiteRTRuntime(convert_tflite(model, "int8", int8_ranges=R.bundled_int8_ranges(model)), guard=False)
    samples = EI.calibration_images(Path(args.data) / "train", scale=scale)
    int16 = LiteRTRuntime(int16x8_file(model, samples))
    pairs = [(n, *held_out[n]) for n in args.images.split(",")]
    bench = read_benchmark(Path(args.data) / "benchmark" / "Set5", scale)
    pairs += [(f"Set5/{Path(p).stem}", lr, hr) for p, lr, hr in zip(bench.paths, bench.lrs, bench.hrs)]
    print(f"| {args.preset} | Keras PSNR (dB) | int8 loss (dB) | 16x8 loss (dB) | int8 - Keras, RMS (grey levels) | "
          "16x8 - Keras, RMS |\n|---|---:|---:|---:|---:|---:|")
    for name, lr, hr in pairs:
        outputs = [upscale(lr, model=rt) for rt in (keras_rt, int8, int16)]
        reference = psnr_y(outputs[0], hr, scale)
        losses = [reference - psnr_y(out, hr, scale) for out in outputs[1:]]
        rms = [float(np.sqrt(np.mean((out.astype(np.float64) - outputs[0].astype(np.float64)) ** 2)))
               for out in outputs[1:]]
        print(f"| {name} | {reference:.2f} | {losses[0]:.2f} | {losses[1]:.2f} | {rms[0]:.2f} | {rms[1]:.2f} |",
              flush=True)
    photo = sample_input((args.size, args.size))
    times = interleaved({"Keras fp32": lambda: keras_rt.run_batch(photo), "int8": lambda: int8.run_batch(photo),
                         "16x8": lambda: int16.run_batch(photo)}, args.runs, 1)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(f"\n{args.size}x{args.size} photo, median of {args.runs}: "
          + ", ".join(f"{k} {1000 * v:.0f} ms ({med['Keras fp32'] / v:.2f}x Keras)" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
