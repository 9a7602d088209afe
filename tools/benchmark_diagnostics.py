"""Diagnostics of past rounds of performance work, as extra ``drn benchmark`` variants.

Each one explains a figure of README's Performance section by a comparison within one run:

* ``keras-graph-concat`` / ``train-graph-concat``: keras-graph / train-graph with the residual distilling
  block in its first form, ``concat(y[..., :w] + x, y[..., w:])`` (two slices, an add, a concat) instead of
  the library's ``y + pad(x)`` (bit-identical results): what the pad form gained;
* ``tflite-int8-convs``: the model's convolutions alone (same shapes, in order, no activations, adds or
  pads), TFLite full int8: how much of the int8 model's time is the convolutions.

They extend the library's registry (:data:`drn_tf.bench.benchmark.VARIANTS`), so they are timed
round-robin with the library's variants and the matmul peaks like any other row::

    python tools/benchmark_diagnostics.py [--preset drn_x2] [--quick] [--variants LIST] [--json R.json]
    python tools/benchmark_notes.py R.json          # the round's goals and notes, with these comparisons
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np
from keras import ops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's drn_tf
from drn_tf.bench import benchmark as B  # noqa: E402
from drn_tf.models import layers as L  # noqa: E402


class FirstFormBlock(L.ResidualDistillingBlock):
    """The residual distilling block's first form: ``concat(y[..., :w] + x, y[..., w:])``."""

    def call(self, x):
        width = x.shape[-1]
        y = L.apply_activation(self.conv(x), self.activation, self.negative_slope)
        return ops.concatenate([y[..., :width] + x, y[..., width:]], axis=-1)


def first_form(model):
    """``model`` with every residual distilling block switched to :class:`FirstFormBlock` (in place:
    same weights, same result); functions traced afterwards use that form."""
    for layer in model.layers:
        if isinstance(layer, L.ResidualDistillingGroup):
            for block in layer.blocks:
                block.__class__ = FirstFormBlock
    return model


def first_form_copy(model):
    """A copy of ``model`` (same config and weights) in the first form; ``model`` is left as it is."""
    copy = type(model).from_config(model.get_config())
    copy(np.zeros((1, 8, 8, int(model.inputs[0].shape[-1])), "float32"))
    copy.set_weights(model.get_weights())
    return first_form(copy)


def conv_chain_model(model):
    """A Keras model made of ``model``'s convolutions only (same shapes, in
    order, with the upsampler's pixel shuffles), without activations, adds,
    pads or concatenations: the time TFLite spends in the convolutions."""
    from drn_tf.models.analysis import model_config

    convs: list[tuple[int, int, int]] = []  # (filters, kernel, shuffle factor after it)
    for layer in model.layers:
        if isinstance(layer, L.ResidualDistillingGroup):
            convs += [(b.conv.filters, b.conv.kernel_size[0], 0) for b in layer.blocks]
            convs.append((layer.compress.filters, layer.compress.kernel_size[0], 0))
        elif isinstance(layer, L.Upsampler):
            for i, conv in enumerate(layer.convs):
                convs.append((conv.filters, conv.kernel_size[0], layer.stages[i] if i < len(layer.stages) else 0))
        elif isinstance(layer, keras.layers.Conv2D):
            convs.append((layer.filters, layer.kernel_size[0], 0))
    config = model_config(model)
    inputs = keras.Input((None, None, int(model.inputs[0].shape[-1])))
    x = inputs
    for i, (filters, kernel, shuffle) in enumerate(convs):
        x = keras.layers.Conv2D(filters, kernel, padding="same", name=f"conv_{i}")(x)
        if shuffle:
            x = L.PixelShuffle(shuffle, name=f"shuffle_{i}")(x)
    chain = keras.Model(inputs, x, name="conv_chain")
    chain.scale = int(config["scale"])  # what drn_tf.export.tflite.convert_tflite reads
    chain.receptive_radius = len(convs)
    return chain


def _keras_graph_concat(b: B.Bench, row: B.Row):
    import tensorflow as tf

    model = first_form_copy(b.model)
    fn = tf.function(lambda x: model(x, training=False))
    fn(b.x_tf)  # trace now
    return lambda: fn(b.x_tf).numpy()


def _train_graph_concat(b: B.Bench, row: B.Row):
    return B.in_memory_step(first_form(B.training_net(b.config)), b, row)


def _tflite_int8_convs(b: B.Bench, row: B.Row):
    rng = np.random.default_rng(0)
    calib = [rng.random((32, 32, 3), dtype=np.float32) for _ in range(2)]
    return B.tflite_timer(b, row, conv_chain_model(b.model), "int8", calibration=calib)


DIAGNOSTICS = {
    "keras-graph-concat": B.Variant(
        "diagnostic: keras-graph with the residual distilling block in its first form (slice, add, concat) "
        "instead of y + pad(x)", "inference", _keras_graph_concat,
    ),
    "tflite-int8-convs": B.Variant(
        "diagnostic: the model's 18 convolutions alone (same shapes, no activations/adds/pads), TFLite full int8",
        "inference", _tflite_int8_convs,
    ),
    "train-graph-concat": B.Variant(
        "diagnostic: train-graph with the residual distilling block in its first form (slice, add, concat)",
        "training", _train_graph_concat,
    ),
}
# table order: each diagnostic beside what it explains
_BESIDE = {"keras-graph": "keras-graph-concat", "tflite-int8": "tflite-int8-convs", "train-graph": "train-graph-concat"}
REGISTRY: dict[str, B.Variant] = {}
for _name, _variant in B.VARIANTS.items():
    REGISTRY[_name] = _variant
    if _name in _BESIDE:
        REGISTRY[_BESIDE[_name]] = DIAGNOSTICS[_BESIDE[_name]]
DEFAULT = ("keras-graph", "keras-graph-concat", "tflite-int8", "tflite-int8-convs", "train-graph", "train-graph-concat")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="drn benchmark with the diagnostics of past rounds.")
    parser.add_argument("--preset", default="drn_x2")
    parser.add_argument("--quick", action="store_true", help="drn benchmark --quick's settings")
    parser.add_argument("--variants", default=",".join(DEFAULT),
                        help=f"comma-separated, from: {', '.join(REGISTRY)} (default: {','.join(DEFAULT)})")
    parser.add_argument("--json", help="write the result JSON here (for tools/benchmark_notes.py)")
    args = parser.parse_args(argv)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    variants = tuple(v for v in REGISTRY if v in chosen)
    settings = B.Settings.quick() if args.quick else B.Settings()
    say = lambda msg: print(f"[diagnostics] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        result = B.run_benchmark(args.preset, None, variants, settings, progress=say, registry=REGISTRY)
    except ValueError as exc:
        parser.error(str(exc))
    result["command"] = "python tools/benchmark_diagnostics.py " + " ".join(sys.argv[1:] if argv is None else argv)
    sys.stdout.write(B.to_markdown(result))
    if args.json:
        B.write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
