#!/usr/bin/env python
"""What int8 can give on this CPU at best: a stack of plain 3x3 convolutions (64 -> 64 channels, the DRN
body's shape, no bias-free tricks, no activations) in Keras fp32, in LiteRT float32 and in LiteRT full int8,
timed in turn round after round on one ``size`` x ``size`` x 64 input. The int8-over-Keras ratio of plain
convolutions bounds what the int8 DRN can reach here: its other ops (pads, adds, activations, the pixel
shuffle) only add time.

    python tools/int8_conv_bound.py [--size 256] [--layers 6] [--channels 64] [--runs 8] [--warmup 2]
        [--threads N]

Prints the medians (ms) and the ratios, with the CPU model and flags.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from drn_tf.bench.machine import interleaved, load_average, machine_info

    h = w = args.size
    c = args.channels
    inp = keras.Input((h, w, c))
    x = inp
    for _ in range(args.layers):
        x = keras.layers.Conv2D(c, 3, padding="same")(x)
    model = keras.Model(inp, x)
    folder = tempfile.mkdtemp(prefix="drn-conv-bound-")
    model.export(folder, verbose=False)

    def convert(int8: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
            converter.representative_dataset = lambda: (
                [np.random.default_rng(i).normal(0, 1, (1, h, w, c)).astype(np.float32)] for i in range(4))
        return converter.convert()

    interpreters = {}
    for name, int8 in (("litert float32", False), ("litert int8", True)):
        it = Interpreter(model_content=convert(int8), num_threads=args.threads)
        it.allocate_tensors()
        interpreters[name] = it
    rng = np.random.default_rng(0)
    xf = rng.normal(0, 1, (1, h, w, c)).astype(np.float32)
    x8 = rng.integers(-100, 100, (1, h, w, c), dtype=np.int8)

    def run(it, value):
        it.set_tensor(it.get_input_details()[0]["index"], value)
        it.invoke()

    timers = {"keras fp32": lambda: model.predict_on_batch(xf),
              "litert float32": lambda: run(interpreters["litert float32"], xf),
              "litert int8": lambda: run(interpreters["litert int8"], x8)}
    times = interleaved(timers, args.runs, args.warmup)
    med = {k: float(np.median(v)) for k, v in times.items()}
    info = machine_info()
    flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
             if f in info["cpu_flags"]]
    print(f"{info['cpu_model']} ({', '.join(flags)}), {args.threads} threads, load average {load_average()}; "
          f"{args.layers} convolutions 3x3 {c}->{c} on {h}x{w}, {args.runs} runs after {args.warmup} warm-up, in turn")
    print("| engine | ms (median) | × keras fp32 |")
    print("|---|---:|---:|")
    for name, t in med.items():
        print(f"| {name} | {1000 * t:.1f} | {med['keras fp32'] / t:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
