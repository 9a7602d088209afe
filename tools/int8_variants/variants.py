"""Exact rewrites of the residual distilling block in the int8 graph (same function, other ops):

    python tools/int8_variants/variants.py {base,split,slice}

``base``: the export as it is (``y + pad(z)``: CONV, LEAKY_RELU, PAD, ADD); ``split``: two convolutions
per block (``w`` and ``g`` outputs), ADD on the ``w`` part, CONCAT; ``slice``: ``concat(a[..., :w] + z,
a[..., w:])``. In the last two the concat's inputs get the concat's range (``tied_ranges``), so the
concat needs no requantisation."""

import sys

from _common import export


def split_block(self, z, kb, act, neg, growth, hook, name):
    import tensorflow as tf

    k, b = kb
    w = k.shape[2]
    ca = hook(f"{name}.conva", self.conv(z, (k[..., :w], b[:w])))
    cb = hook(f"{name}.convb", self.conv(z, (k[..., w:], b[w:])))
    s = hook(f"{name}.s", hook(f"{name}.acta", self.apply_activation(ca, act, neg)) + z)
    t = hook(f"{name}.t", self.apply_activation(cb, act, neg))
    return hook(f"{name}.add", tf.concat([s, t], axis=-1))


def slice_block(self, z, kb, act, neg, growth, hook, name):
    import tensorflow as tf

    w = kb[0].shape[2]
    a = self.apply_activation(hook(f"{name}.conv", self.conv(z, kb)), act, neg)
    a = hook(f"{name}.t", a)  # same range as the concat: slices keep it
    s = hook(f"{name}.s", a[..., :w] + z)
    return hook(f"{name}.add", tf.concat([s, a[..., w:]], axis=-1))


def tied_ranges(graph, samples, **kw):
    r = ORIG_RANGES(graph, samples, **kw)
    for n in list(r):
        if n.endswith(".s") or n.endswith(".t"):
            r[n] = r[n[:-2] + ".add"]
    return r


if __name__ == "__main__":
    from drn_tf.export import int8 as EI

    ORIG_RANGES = EI._tap_ranges
    variant = sys.argv[1]
    if variant == "base":
        export("base")
    elif variant in ("split", "slice"):
        export(variant, block=split_block if variant == "split" else slice_block, tap_ranges=tied_ranges)
    else:
        sys.exit(f"unknown variant {variant!r}: base, split or slice")
