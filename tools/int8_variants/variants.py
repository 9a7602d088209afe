import os as _os
from pathlib import Path as _Path

MODEL = _Path(__file__).resolve().parents[2] / "assets" / "drn_x2.keras"
OUT = _os.environ.get("OUT_DIR", "int8_variants_out")
_os.makedirs(OUT, exist_ok=True)
import sys
import time

import drn_tf.export.tflite as E
from drn_tf.export import int8 as EI  # noqa: E402
from drn_tf.models.drn import load_model

orig_call = EI._QuantGraph.__call__
orig_ranges = EI._tap_ranges

def split_call(self, x, hook=lambda name, t: t, clip=True):
    """two convs per block (w and g outputs) + ADD + CONCAT, equal ranges on the concat's inputs"""
    import tensorflow as tf
    def conv(t, kb):
        return tf.nn.bias_add(tf.nn.conv2d(t, kb[0], 1, "SAME"), kb[1])
    c = self.input_shift
    x = hook("input", x - c)
    x = tf.concat([tf.pad(ch, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float(m - c))
                   for ch, m in zip(tf.split(x, len(self.mean), axis=-1), self.mean)], axis=-1)
    kernel, bias = self.lfe
    y0 = hook("lfe", tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias + self.lfe_shift))
    y = y0
    for g, (blocks, compress, comp_act, slope) in enumerate(self.groups):
        z = y
        for b, (kb, act, neg, growth) in enumerate(blocks):
            k, bb = kb
            w = k.shape[2]
            ca = hook(f"g{g}b{b}.conva", conv(z, (k[..., :w], bb[:w])))
            cb = hook(f"g{g}b{b}.convb", conv(z, (k[..., w:], bb[w:])))
            aa = hook(f"g{g}b{b}.acta", self.apply_activation(ca, act, neg))
            s = hook(f"g{g}b{b}.s", aa + z)
            t = hook(f"g{g}b{b}.t", self.apply_activation(cb, act, neg))
            z = hook(f"g{g}b{b}.add", tf.concat([s, t], axis=-1))
        e = hook(f"g{g}.compress", conv(z, compress))
        e = hook(f"g{g}.act", self.apply_activation(e, comp_act, slope))
        y = hook(f"g{g}.out", e + y)
    y = hook("body_end", conv(y, self.body_end))
    if self.global_skip:
        y = hook("skip", y + y0)
    u = hook("output", conv(y, self.up))
    return self.shuffle(tf.clip_by_value(u, 0.0, 1.0) if clip else u)

def slice_call(self, x, hook=lambda name, t: t, clip=True):
    """concat(a[..., :w] + z, a[..., w:]), equal ranges on the concat's inputs"""
    import tensorflow as tf
    def conv(t, kb):
        return tf.nn.bias_add(tf.nn.conv2d(t, kb[0], 1, "SAME"), kb[1])
    c = self.input_shift
    x = hook("input", x - c)
    x = tf.concat([tf.pad(ch, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float(m - c))
                   for ch, m in zip(tf.split(x, len(self.mean), axis=-1), self.mean)], axis=-1)
    kernel, bias = self.lfe
    y0 = hook("lfe", tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias + self.lfe_shift))
    y = y0
    for g, (blocks, compress, comp_act, slope) in enumerate(self.groups):
        z = y
        for b, (kb, act, neg, growth) in enumerate(blocks):
            w = kb[0].shape[2]
            a = self.apply_activation(hook(f"g{g}b{b}.conv", conv(z, kb)), act, neg)
            a = hook(f"g{g}b{b}.t", a)   # same range as the concat: slices keep it
            s = hook(f"g{g}b{b}.s", a[..., :w] + z)
            z = hook(f"g{g}b{b}.add", tf.concat([s, a[..., w:]], axis=-1))
        e = hook(f"g{g}.compress", conv(z, compress))
        e = hook(f"g{g}.act", self.apply_activation(e, comp_act, slope))
        y = hook(f"g{g}.out", e + y)
    y = hook("body_end", conv(y, self.body_end))
    if self.global_skip:
        y = hook("skip", y + y0)
    u = hook("output", conv(y, self.up))
    return self.shuffle(tf.clip_by_value(u, 0.0, 1.0) if clip else u)

def tied_ranges(graph, samples, **kw):
    r = orig_ranges(graph, samples, **kw)
    for n in list(r):
        if n.endswith(".s") or n.endswith(".t"):
            r[n] = r[n[:-2] + ".add"]
    return r

if __name__ == "__main__":
    variant = sys.argv[1]
    m = load_model(str(MODEL))
    if variant == "split":
        EI._QuantGraph.__call__ = split_call; EI._tap_ranges = tied_ranges
    elif variant == "slice":
        EI._QuantGraph.__call__ = slice_call; EI._tap_ranges = tied_ranges
    t = time.time()
    flat = E.convert_tflite(m, "int8", calibration_count=EI.CALIBRATION_COUNT)
    open(f"{OUT}/{variant}.tflite", "wb").write(flat)
    print(variant, time.time() - t, "s", E.tflite_ops(flat))
