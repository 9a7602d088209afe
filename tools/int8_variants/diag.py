import os as _os
from pathlib import Path as _Path

MODEL = _Path(__file__).resolve().parents[2] / "assets" / "drn_x2.keras"
OUT = _os.environ.get("OUT_DIR", "int8_variants_out")
_os.makedirs(OUT, exist_ok=True)
import sys

import drn_tf.export.tflite as E
from drn_tf.export import int8 as EI  # noqa: E402
from drn_tf.models.drn import load_model

variant = sys.argv[1]
orig_pad_call = EI._QuantGraph.__call__
import tensorflow as tf

if variant == "zeropad":   # diagnostic only (changes the border): one zero PAD for the per-channel PADV2s
    def call(self, x, hook=lambda n, t: t, clip=True):
        real_split, real_concat, real_pad = tf.split, tf.concat, tf.pad
        tf.split = lambda t, n, axis: [t]
        tf.concat = lambda ts, axis: ts[0] if len(ts) == 1 else real_concat(ts, axis)
        tf.pad = lambda t, p, constant_values=0.0: real_pad(t, p)
        try:
            return orig_pad_call(self, x, hook, clip)
        finally:
            tf.split, tf.concat, tf.pad = real_split, real_concat, real_pad
    EI._QuantGraph.__call__ = call
elif variant == "nolrelu":  # diagnostic only: the blocks' LeakyReLU left out
    real = None
    def call(self, x, hook=lambda n, t: t, clip=True):
        ap = self.apply_activation
        self.apply_activation = lambda t, act, neg: t if act == "leaky_relu" else ap(t, act, neg)
        try:
            return orig_pad_call(self, x, hook, clip)
        finally:
            self.apply_activation = ap
    EI._QuantGraph.__call__ = call
m = load_model(str(MODEL))
flat = E.convert_tflite(m, "int8", calibration_count=EI.CALIBRATION_COUNT)
open(f"{OUT}/{variant}.tflite", "wb").write(flat)
print(variant, E.tflite_ops(flat))
