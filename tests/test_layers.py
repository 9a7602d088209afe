"""One shared layer test, run for every DRN layer: config round trip,
``.keras`` save/load with ``safe_mode=True``, output shape/dtype against
``compute_output_shape``, and one ``fit`` step that changes the weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from drn_tf.models import layers as L

# (layer class, constructor kwargs, input shape (N, H, W, C))
LAYER_CASES = [
    (L.MeanShift, {"mean": (0.1, 0.2, 0.3), "sign": -1}, (2, 5, 7, 3)),
    (L.ResidualDistillingBlock, {"growth": 4, "activation": "leaky_relu", "negative_slope": 0.1}, (2, 5, 7, 8)),
    (L.ResidualDistillingBlock, {"growth": 3, "activation": "relu"}, (1, 6, 5, 5)),
    (L.ResidualDistillingGroup, {"num_blocks": 2, "growth": 4, "compression_activation": "elu"}, (2, 5, 7, 8)),
    (L.PixelShuffle, {"block_size": 3}, (2, 4, 5, 18)),
    (L.PixelShuffle, {"block_size": 2, "method": "transposed_conv"}, (1, 4, 5, 12)),
    (L.Upsampler, {"scale": 3, "out_channels": 3, "layout": "single"}, (2, 4, 5, 8)),
    (L.Upsampler, {"scale": 4, "out_channels": 3, "layout": "progressive"}, (1, 4, 5, 8)),
]

IDS = [f"{cls.__name__}-{i}" for i, (cls, _, _) in enumerate(LAYER_CASES)]


def _apply(layer, shape, seed=0):
    x = np.random.default_rng(seed).random(shape).astype("float32")
    return x, np.asarray(layer(x))


@pytest.mark.parametrize("cls,kwargs,shape", LAYER_CASES, ids=IDS)
def test_layer_contract(cls, kwargs, shape, tmp_path):
    layer = cls(**kwargs, name="under_test")

    # attributes are named like the constructor arguments
    for key, value in kwargs.items():
        got = getattr(layer, key)
        assert (tuple(got) if isinstance(got, (list, tuple)) else got) == (
            tuple(value) if isinstance(value, (list, tuple)) else value
        ), key

    # config round trip reproduces the config and the behaviour
    config = layer.get_config()
    for key in kwargs:
        assert key in config, f"{key} missing from get_config()"
    clone = cls.from_config(config)
    assert clone.get_config() == config

    x, y = _apply(layer, shape)
    expected_shape = layer.compute_output_shape(shape)
    assert y.shape == tuple(expected_shape)
    assert y.dtype == np.float32
    assert np.isfinite(y).all()
    clone(x)  # build
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(x)), y, rtol=1e-6, atol=1e-6)

    # symbolic shape inference with unknown height/width
    sym = keras.Input(shape=(None, None, shape[-1]))
    out = cls.from_config(config)(sym)
    assert out.shape[-1] == expected_shape[-1]

    # .keras save/load with safe_mode=True (registered, no Lambda) gives identical outputs
    inputs = keras.Input(shape=(None, None, shape[-1]))
    model = keras.Model(inputs, cls.from_config(config)(inputs))
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)))

    # one fit step moves trainable weights (layers without weights: model still trains through them)
    if model.trainable_weights:
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mae")
        target = np.random.default_rng(1).random(y.shape).astype("float32")
        model.fit(x, target, epochs=1, batch_size=shape[0], verbose=0)
        after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def test_residual_distilling_block_semantics():
    """D_{i+1} = concat(D_out + D_i, d) with [D_out, d] = act(conv(D_i))."""
    block = L.ResidualDistillingBlock(growth=2, activation="linear")
    x = np.random.default_rng(0).random((1, 4, 4, 3)).astype("float32")
    y = np.asarray(block(x))
    conv = np.asarray(block.conv(x))
    assert y.shape == (1, 4, 4, 5)
    np.testing.assert_allclose(y[..., :3], conv[..., :3] + x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[..., 3:], conv[..., 3:], rtol=1e-6, atol=1e-6)


def test_group_long_skip_and_compression():
    group = L.ResidualDistillingGroup(num_blocks=3, growth=4)
    x = np.random.default_rng(0).random((1, 6, 6, 8)).astype("float32")
    y = np.asarray(group(x))
    assert y.shape == x.shape
    assert group.compress.kernel.shape == (1, 1, 8 + 3 * 4, 8)
    # with the compression zeroed, ELU(0) = 0, so the group is the identity (long skip)
    group.compress.kernel.assign(np.zeros(group.compress.kernel.shape, "float32"))
    group.compress.bias.assign(np.zeros(group.compress.bias.shape, "float32"))
    np.testing.assert_allclose(np.asarray(group(x)), x, atol=1e-7)


@pytest.mark.parametrize("s", [2, 3, 4])
def test_pixel_shuffle_matches_tf_depth_to_space(s):
    import tensorflow as tf

    x = np.random.default_rng(s).random((2, 3, 5, 3 * s * s)).astype("float32")
    expected = tf.nn.depth_to_space(x, s).numpy()
    for method in ("auto", "reshape", "transposed_conv"):
        np.testing.assert_array_equal(np.asarray(L.PixelShuffle(s, method=method)(x)), expected, err_msg=method)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="activation"):
        L.ResidualDistillingBlock(activation="swishy")
    with pytest.raises(ValueError, match="num_blocks"):
        L.ResidualDistillingGroup(num_blocks=0)
    with pytest.raises(ValueError, match="power of two"):
        L.upsampler_stages(3 * 2, "progressive")
    with pytest.raises(ValueError, match="divisible"):
        L.PixelShuffle(2).compute_output_shape((1, 4, 4, 6))


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        (L.ResidualDistillingGroup, {"num_blocks": 100000}, "num_blocks must be <= 64"),
        (L.ResidualDistillingGroup, {"growth": 10**6}, "growth must be <= 512"),
        (L.ResidualDistillingGroup, {"compression_activation": "softmax"}, "compression_activation must be one of"),
        (L.ResidualDistillingBlock, {"growth": True}, "growth must be an integer"),
        (L.ResidualDistillingBlock, {"kernel_size": 4}, "kernel_size must be one of"),
        (L.ResidualDistillingBlock, {"negative_slope": float("inf")}, "negative_slope must be a finite number"),
        (L.PixelShuffle, {"block_size": 1000}, "block_size must be <= 8"),
        (L.PixelShuffle, {"method": "eval"}, "method must be one of"),
        (L.Upsampler, {"scale": 10**6}, "scale must be <= 8"),
        (L.Upsampler, {"out_channels": 0}, "out_channels must be >= 1"),
        (L.Upsampler, {"shuffle_method": "x"}, "shuffle_method must be one of"),
        (L.MeanShift, {"mean": [0.1] * 5000}, "mean must be a list of 1 to 1024 numbers"),
        (L.MeanShift, {"mean": ["a", "b"]}, "mean must be a finite number"),
        (L.MeanShift, {"sign": True}, "sign must be -1 or"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_layer_arguments_are_bounded_before_anything_is_built(cls, kwargs, message):
    """A .keras file may name these layers with any config: absurd sizes fail at once, by name."""
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)
    with pytest.raises((ValueError, TypeError), match=message):  # Keras' from_config wraps it in a TypeError
        cls.from_config({**cls().get_config(), **kwargs})
