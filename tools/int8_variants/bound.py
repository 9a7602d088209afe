"""Bounds, not models: the int8 graph with passes left out, to time what they cost
(the outputs are wrong by design):

    python tools/int8_variants/bound.py NAME [zeropad] [nolrelu] [noblockadd]

``zeropad``: one zero PAD of the input instead of the per-channel PADV2s; ``nolrelu``: the blocks without
their LeakyReLU; ``noblockadd``: the blocks without the residual PAD + ADD. Writes ``NAME.tflite`` into VARIANTS_DIR."""

import sys

from _common import export

OPTS = set(sys.argv[2:])


def block(self, z, kb, act, neg, growth, hook, name):
    import tensorflow as tf

    a = hook(f"{name}.conv", self.conv(z, kb))
    if "nolrelu" not in OPTS:
        a = hook(f"{name}.act", self.apply_activation(a, act, neg))
    return a if "noblockadd" in OPTS else hook(f"{name}.add", a + tf.pad(z, [[0, 0], [0, 0], [0, 0], [0, growth]]))


def zero_pad_input(self, x):
    import tensorflow as tf

    return tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])


if __name__ == "__main__":
    unknown = OPTS - {"zeropad", "nolrelu", "noblockadd"}
    if len(sys.argv) < 2 or unknown:
        sys.exit(f"usage: bound.py NAME [zeropad] [nolrelu] [noblockadd]{f' (unknown: {sorted(unknown)})' if unknown else ''}")
    export(sys.argv[1], block=block, pad_input=zero_pad_input if "zeropad" in OPTS else None)
