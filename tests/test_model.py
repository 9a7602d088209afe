"""The DRN model: shapes, parameter counts by hand, serialization, training,
the JAX backend, and full convolutionality (what tiling relies on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import drn_tf
from drn_tf import DRN
from drn_tf.models.analysis import count_macs, count_params
from drn_tf.models.presets import PRESETS, get_preset


def hand_param_count(scale, channels, growth, num_blocks, num_groups, upsampler="single", image_channels=3, **_):
    """Parameters from the layer shapes, written out independently of drn_tf.models.analysis.

    conv k x k, cin -> cout: k*k*cin*cout weights + cout biases.
    """

    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    c, g, k = channels, growth, num_blocks
    total = conv(3, image_channels, c)  # LFE
    group = sum(conv(3, c + i * g, c + (i + 1) * g) for i in range(k))  # RDB i: width c+ig -> c+(i+1)g
    group += conv(1, c + k * g, c)  # F_p compression
    total += num_groups * group
    total += conv(3, c, c)  # body end
    if upsampler == "single" or scale in (2, 3):
        total += conv(3, c, image_channels * scale * scale)
    else:  # progressive x2 stages, then conv to RGB
        stages = int(np.log2(scale))
        total += stages * conv(3, c, 4 * c) + conv(3, c, image_channels)
    return total


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_count_matches_hand_formula(name):
    config = get_preset(name)["config"]
    model = DRN.from_preset(name, load_weights=False)
    assert model.count_params() == hand_param_count(**config)
    assert count_params(config) == model.count_params()
    base = name.rsplit("_x", 1)[0]
    if base == "drn" and config["scale"] == 2:
        assert 1_000_000 <= model.count_params() <= 1_200_000
    if base == "drn_s":
        assert 250_000 <= model.count_params() <= 400_000


def test_progressive_upsampler_parameter_count():
    config = dict(get_preset("drn_s_x4")["config"], upsampler="progressive")
    model = DRN(**config)
    assert model.count_params() == hand_param_count(**config)
    assert model.predict_on_batch(np.zeros((1, 5, 6, 3), "float32")).shape == (1, 20, 24, 3)


def test_macs_equal_weights_per_pixel_for_single_upsampler():
    config = get_preset("drn_x2")["config"]
    model = DRN.from_preset("drn_x2", load_weights=False)
    n_bias = sum(int(np.prod(w.shape)) for w in model.weights if "bias" in w.path)
    # every conv runs at LR resolution: MACs per LR pixel = number of kernel weights
    assert count_macs(config, 10, 7) == (model.count_params() - n_bias) * 70


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_on_odd_sizes(scale):
    model = DRN.from_preset(f"drn_s_x{scale}", load_weights=False)
    x = np.random.default_rng(0).random((2, 17, 23, 3)).astype("float32")
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == (2, 17 * scale, 23 * scale, 3)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert model.input_shape == (None, None, None, 3)


def test_model_learns_identity_of_mean_at_init(fresh_drn_s):
    """MeanShift around the body: with zero upsampler weights the output is the mean colour."""
    model = fresh_drn_s(2)
    for w in model.get_layer("upsampler").weights:
        w.assign(np.zeros(w.shape, "float32"))
    y = np.asarray(model.predict_on_batch(np.random.default_rng(0).random((1, 5, 5, 3)).astype("float32")))
    np.testing.assert_allclose(y, np.broadcast_to(np.array(model.mean, "float32"), y.shape), atol=1e-7)


def test_keras_save_load_safe_mode_identical(fresh_drn_s, tmp_path):
    model = fresh_drn_s(3)
    x = np.random.default_rng(1).random((1, 11, 9, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, DRN)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(np.asarray(loaded.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)))
    again = drn_tf.load_model(path)
    np.testing.assert_array_equal(np.asarray(again.predict_on_batch(x)), np.asarray(model.predict_on_batch(x)))


def test_model_config_round_trip():
    model = DRN(scale=3, channels=16, growth=8, num_blocks=2, num_groups=2, activation="relu", global_skip=False)
    clone = DRN.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    assert clone.count_params() == model.count_params()
    assert "global_skip" not in [layer.name for layer in clone.layers]


def test_one_fit_step_reduces_l1():
    keras.utils.set_random_seed(0)
    model = DRN(scale=2, channels=16, growth=8, num_blocks=2, num_groups=1)
    rng = np.random.default_rng(0)
    hr = rng.random((4, 16, 16, 3)).astype("float32")
    lr = hr.reshape(4, 8, 2, 8, 2, 3).mean(axis=(2, 4))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae")
    before = model.evaluate(lr, hr, verbose=0)
    model.fit(lr, hr, epochs=1, batch_size=4, verbose=0)
    after = model.evaluate(lr, hr, verbose=0)
    assert after < before


def test_from_preset_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="drn_x2"):
        DRN.from_preset("drn_x5")


def test_from_preset_loads_bundled_file(fresh_drn_s, tmp_path):
    """A file assets_dir/<preset>.keras is what from_preset returns (weights included)."""
    model = fresh_drn_s(2)
    model.save(tmp_path / "drn_s_x2.keras")
    loaded = DRN.from_preset("drn_s_x2", assets_dir=tmp_path)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    fresh = DRN.from_preset("drn_s_x2", assets_dir=tmp_path, load_weights=False)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh.get_weights(), model.get_weights()))


@pytest.mark.parametrize("scale", [2, 3])
def test_fully_convolutional_crop_equivariance(scale):
    """Output of a crop == crop of the output, away from the crop's edges by the receptive radius."""
    model = DRN.from_preset(f"drn_s_x{scale}", load_weights=False)
    r = model.receptive_radius
    rng = np.random.default_rng(scale)
    x = rng.random((1, 64, 57, 3)).astype("float32")
    full = np.asarray(model.predict_on_batch(x))[0]
    top, left, h, w = 9, 13, 2 * r + 11, 2 * r + 9
    crop = np.asarray(model.predict_on_batch(x[:, top : top + h, left : left + w]))[0]
    inner_full = full[(top + r) * scale : (top + h - r) * scale, (left + r) * scale : (left + w - r) * scale]
    inner_crop = crop[r * scale : (h - r) * scale, r * scale : (w - r) * scale]
    assert inner_crop.size > 0
    np.testing.assert_allclose(inner_crop, inner_full, atol=1e-4, rtol=0)


JAX_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from drn_tf import DRN
    from drn_tf.train.state import atomic_save_weights
    start_weights, x_path, out_weights = sys.argv[1], sys.argv[2], sys.argv[3]
    model = DRN.from_preset("drn_s_x3", load_weights=False)
    model.load_weights(start_weights)
    x = np.load(x_path)
    y_start = np.asarray(model.predict_on_batch(x))
    target = np.clip(y_start * 0.5 + 0.2, 0, 1)
    model.compile(optimizer="adam", loss="mae")
    before = model.evaluate(x, target, verbose=0)
    model.fit(x, target, epochs=3, verbose=0)
    after = model.evaluate(x, target, verbose=0)
    np.save(x_path + ".start.npy", y_start)
    np.save(x_path + ".trained.npy", np.asarray(model.predict_on_batch(x)))
    atomic_save_weights(model, out_weights)
    print(json.dumps({"shape": list(y_start.shape), "before": float(before), "after": float(after)}))
    """
)


@pytest.mark.slow
def test_jax_backend_trains_and_weights_round_trip_to_tensorflow(fresh_drn_s, tmp_path):
    """TF weights -> JAX gives the same outputs; JAX trains; JAX-trained weights -> TF gives JAX's outputs."""
    pytest.importorskip("jax", reason="jax is not installed (pip install 'jax[cpu]')")
    model = fresh_drn_s(3)
    x = np.random.default_rng(5).random((1, 13, 10, 3)).astype("float32")
    weights = tmp_path / "w.weights.h5"
    model.save_weights(weights)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "jax_check.py"
    script.write_text(JAX_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    trained = tmp_path / "jax_trained.weights.h5"
    proc = subprocess.run(
        [sys.executable, str(script), str(weights), str(tmp_path / "x.npy"), str(trained)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 39, 30, 3]
    assert result["after"] < result["before"]
    np.testing.assert_allclose(np.load(tmp_path / "x.npy.start.npy"), np.asarray(model.predict_on_batch(x)), atol=1e-5)
    tf_model = fresh_drn_s(3)
    tf_model.load_weights(trained)
    y_tf = np.asarray(tf_model.predict_on_batch(x))
    y_jax = np.load(tmp_path / "x.npy.trained.npy")
    assert np.abs(y_jax - np.load(tmp_path / "x.npy.start.npy")).max() > 1e-3  # training changed the model
    np.testing.assert_allclose(y_tf, y_jax, atol=1e-5)


def _crafted_keras(tmp_path, **changes):
    """A small DRN's .keras file with ``changes`` written into the config.json inside the zip."""
    import zipfile

    src = tmp_path / "small.keras"
    DRN(scale=2, channels=8, growth=4, num_blocks=1, num_groups=1).save(src)
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(files["config.json"])
    cfg["config"].update(changes)
    files["config.json"] = json.dumps(cfg).encode()
    out = tmp_path / "crafted.keras"
    with zipfile.ZipFile(out, "w") as z:
        for n, b in files.items():
            z.writestr(n, b)
    return out


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"num_groups": 100000}, "num_groups must be <= 64, got 100000"),
        ({"num_blocks": 10**9}, "num_blocks must be <= 64"),
        ({"channels": 1 << 20}, "channels must be <= 1024"),
        ({"growth": -3}, "growth must be >= 1"),
        ({"channels": "64"}, "channels must be an integer, got '64'"),
        ({"num_groups": 2.5}, "num_groups must be an integer"),
        ({"scale": 5}, "scale must be one of"),
        ({"activation": "__import__('os').system"}, "activation must be one of"),
        ({"negative_slope": float("nan")}, "negative_slope must be a finite number"),
        ({"upsampler": "magic"}, "upsampler must be one of"),
        ({"image_channels": 100000, "mean": [0.5] * 100000}, "image_channels must be <= 4"),
        ({"mean": "abc"}, "mean must be a list"),
        # each within its bound, too large together
        ({"channels": 1024, "growth": 512, "num_blocks": 64, "num_groups": 64}, "parameters, over the limit"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_keras_file_with_absurd_sizes_fails_before_building_anything(tmp_path, monkeypatch, changes, message):
    """A .keras file is a config: `num_groups: 100000` used to build 100000 groups (8.5 GB and climbing).
    The arguments are checked before the first layer exists (keras.Input is the first thing DRN builds)."""
    path = _crafted_keras(tmp_path, **changes)

    def built(*args, **kwargs):
        raise AssertionError("DRN started building before it checked its arguments")

    monkeypatch.setattr(keras, "Input", built)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        drn_tf.load_model(path)


def test_arguments_at_their_bounds_are_accepted_and_normalised():
    model = DRN(scale=3.0, channels=4, growth=1, num_blocks=1, num_groups=1, negative_slope=0, image_channels=1,
                mean=[0.5], upsampler="progressive")  # progressive is allowed for a scale it leaves single
    assert (model.scale, model.channels, model.negative_slope, model.mean) == (3, 4, 0.0, (0.5,))
    assert json.loads(json.dumps(model.get_config())) == model.get_config()


def test_every_preset_names_a_registered_architecture():
    """Presets -> model classes in one place (drn_tf.models.build): what a second architecture would extend."""
    from drn_tf.models.build import ARCHITECTURES, from_preset, model_class
    from drn_tf.models.presets import PRESETS

    for name, preset in PRESETS.items():
        assert preset["architecture"] in ARCHITECTURES, name
        assert model_class(name) is DRN
    m = from_preset("drn_s_x3", load_weights=False, channels=16)
    assert isinstance(m, DRN) and m.get_config()["channels"] == 16 and m.get_config()["scale"] == 3
    with pytest.raises(ValueError, match="unknown preset"):
        model_class("srcnn_x2")
