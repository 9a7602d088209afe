import os as _os
from pathlib import Path as _Path

MODEL = _Path(__file__).resolve().parents[2] / "assets" / "drn_x2.keras"
OUT = _os.environ.get("OUT_DIR", "int8_variants_out")
_os.makedirs(OUT, exist_ok=True)
import sys

import drn_tf.export.tflite as E
from drn_tf.export import int8 as EI  # noqa: E402
from drn_tf.models.drn import load_model

opts = set(sys.argv[2:]); name = sys.argv[1]
def call(self, x, hook=lambda name, t: t, clip=True):
    import tensorflow as tf
    def conv(t, kb):
        return tf.nn.bias_add(tf.nn.conv2d(t, kb[0], 1, "SAME"), kb[1])
    c = self.input_shift
    x = hook("input", x - c)
    if "zeropad" in opts:
        x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    else:
        x = tf.concat([tf.pad(ch, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float(m - c))
                       for ch, m in zip(tf.split(x, len(self.mean), axis=-1), self.mean)], axis=-1)
    kernel, bias = self.lfe
    y0 = hook("lfe", tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias + self.lfe_shift))
    y = y0
    for g, (blocks, compress, comp_act, slope) in enumerate(self.groups):
        z = y
        for b, (kb, act, neg, growth) in enumerate(blocks):
            a = hook(f"g{g}b{b}.conv", conv(z, kb))
            if "nolrelu" not in opts:
                a = hook(f"g{g}b{b}.act", self.apply_activation(a, act, neg))
            z = a if "noblockadd" in opts else hook(f"g{g}b{b}.add", a + tf.pad(z, [[0, 0], [0, 0], [0, 0], [0, growth]]))
        e = hook(f"g{g}.compress", conv(z, compress))
        e = hook(f"g{g}.act", self.apply_activation(e, comp_act, slope))
        y = hook(f"g{g}.out", e + y)
    y = hook("body_end", conv(y, self.body_end))
    if self.global_skip:
        y = hook("skip", y + y0)
    u = hook("output", conv(y, self.up))
    return self.shuffle(tf.clip_by_value(u, 0.0, 1.0) if clip else u)
EI._QuantGraph.__call__ = call
m = load_model(str(MODEL))
flat = E.convert_tflite(m, "int8", calibration_count=EI.CALIBRATION_COUNT)
open(f"{OUT}/{name}.tflite", "wb").write(flat)
print(name, E.tflite_ops(flat))
