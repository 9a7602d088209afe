"""tools/int8_qat.py's trainable int8 graph (quantization-aware fine-tuning; tools/int8_noise_budget.py runs it
one rounding source at a time): it is the export's graph, its weights go back into the Keras model unfolded,
the kernels' rounding is the converter's per-channel int8 with a straight-through gradient, and rounding errors
of different taps add up."""

import numpy as np
import pytest

from paths import load_tool


@pytest.fixture(scope="module")
def qat():
    return load_tool("int8_qat")


@pytest.fixture()
def model():
    from drn_tf.models.drn import DRN

    return DRN.from_preset("drn_s_x2")


def test_weights_rounded_per_channel_with_a_straight_through_gradient(qat):
    import tensorflow as tf

    kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32") * [1, 10, 0.1, 3, 7])
    with tf.GradientTape() as tape:
        q = qat._weights_fake_quant(tf, kernel)
        loss = tf.reduce_sum(q * 2.0)
    q, k = q.numpy(), kernel.numpy()
    for c in range(5):  # each output channel on its own grid of 255 steps through its largest magnitude
        step = np.abs(k[..., c]).max() / 127
        np.testing.assert_allclose(q[..., c] / step, np.round(q[..., c] / step), atol=1e-3)
        assert np.abs(q[..., c] - k[..., c]).max() <= step / 2 + 1e-6
    np.testing.assert_allclose(tape.gradient(loss, kernel).numpy(), 2.0)


def test_trainable_graph_is_the_export_graph_and_writes_back_unfolded(qat, model):
    """Float: the Keras model's output; quantized taps: the export graph with its fake quants (what the int8
    converter reads); the variables, changed, go back into the Keras model so that it computes what the
    graph computes (the LFE's input shift and the output mean folded in the graph, not in the model)."""
    import tensorflow as tf

    from drn_tf.export import int8 as EI
    from drn_tf.inference import runtimes as R

    ranges = R.bundled_int8_ranges(model)
    x = np.random.default_rng(1).random((1, 12, 17, 3)).astype("float32")
    graph = qat.TrainableGraph(model)
    np.testing.assert_allclose(graph.forward(tf.constant(x), ranges, quantize=False).numpy(),
                               np.clip(model.predict_on_batch(x), 0, 1), atol=1e-5)

    def fake_quant(name, t):
        lo, hi = ranges[name]
        return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

    export = EI._QuantGraph(model)(tf.constant(x), fake_quant, clip=False).numpy()
    np.testing.assert_allclose(graph.forward(tf.constant(x), ranges, quantize=True, weights=False).numpy(), export,
                               atol=1e-6)
    rng = np.random.default_rng(2)
    for v in graph.variables:  # a training step's worth of change everywhere
        v.assign_add(rng.normal(scale=0.01, size=v.shape).astype("float32"))
    want = graph.forward(tf.constant(x), ranges, quantize=False).numpy()
    assert np.abs(want - export).max() > 0.01  # the change shows
    graph.write_back()
    np.testing.assert_allclose(np.clip(model.predict_on_batch(x), 0, 1), want, atol=1e-5)


def test_rounding_errors_of_taps_add_up(qat, model):
    """Rounding errors of different taps are independent, the premise of tools/int8_noise_budget.py: its
    errors of one source at a time (a tap, or the kernels) sum close to the error with all of them at once."""
    import tensorflow as tf

    from drn_tf.bench.runtime_table import sample_input
    from drn_tf.export.int8 import tap_names
    from drn_tf.inference import runtimes as R

    budget = load_tool("int8_noise_budget")
    ranges = R.bundled_int8_ranges(model)
    graph = qat.TrainableGraph(model)
    x = tf.constant(sample_input((48, 48)))  # a photo: nothing clips, so only rounding

    def run(**kw):
        return graph.forward(x, ranges, **kw)[0].numpy() * 255

    ref = run(quantize=False)
    every = float(np.mean((run(quantize=True) - ref) ** 2))
    parts = budget.errors_alone(run, tap_names(model), ref, lambda image: image)
    assert parts["input"] < 1e-6 < min(v for k, v in parts.items() if k != "input")  # the input is exact in int8
    assert 0.7 * every < sum(parts.values()) < 1.3 * every
