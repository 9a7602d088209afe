"""The runtime interface (drn_tf.inference.runtime.Runtime) and the one runtime table
(drn_tf.inference.runtimes.RUNTIMES): every entry, and the SavedModel runtime, is a Runtime that the one
tiling assembly (drn_tf.inference.tiled) runs tiled exactly as whole; the tile rule has one message
(drn_tf.core.tiling.check_tile) wherever it is hit.

TFLite files go to a per-module cache folder, never to the user's cache.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from drn_tf.core.tiling import check_tile
from drn_tf.inference import runtimes as R
from drn_tf.inference.runtime import KerasRuntime, Runtime, as_runtime
from drn_tf.inference.tiled import super_resolve
from drn_tf.inference.upscale import upscale
from drn_tf.models.drn import bundled_model_path
from drn_tf.models.resolve import model_receptive_radius, resolve_model


@pytest.fixture(scope="module")
def model():
    """The bundled trained drn_s_x2 (its int8 ranges are bundled: litert-int8 converts without data)."""
    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("assets/drn_s_x2.keras (trained weights) not bundled")
    return resolve_model(preset="drn_s_x2")


# How far a tiled result may be from the whole-image one: float round-off (default 1e-4), nothing for an integer
# model, one level where the runtime rounds each tile to uint8 (a round-off can flip one).
# keras-bf16 (built on CPUs with AVX512_BF16/AMX only): bf16 rounding of sums whose order may follow the tile width
TILED_ATOL = {"litert-int8": 0.0, "saved_model": 1.0 / 255 + 1e-6, "keras-bf16": 2.0 / 255}


@pytest.fixture(scope="module")
def runtimes(model, tmp_path_factory):
    """Every entry of the table built from the model (those this machine cannot build are left out: their
    builders say why, a ModelError), and the SavedModel runtime of its export."""
    from drn_tf.export.savedmodel import export_saved_model
    from drn_tf.inference.savedmodel import SavedModelRuntime
    from drn_tf.models.resolve import ModelError

    cache = tmp_path_factory.mktemp("export_cache")
    built = {}
    for name in R.RUNTIMES:
        try:
            built[name] = R.runtime_model(model, name, cache_dir=cache)
        except ModelError as exc:
            if name in ("keras", "litert", "litert-int8"):
                raise
            print(f"{name} not built here: {exc}")
    built["saved_model"] = SavedModelRuntime(export_saved_model(model, tmp_path_factory.mktemp("sm") / "drn"))
    return built


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(11).integers(0, 256, size=(45, 58, 3), dtype=np.uint8)


def test_the_table_is_what_runtime_options_accept():
    import argparse

    from drn_tf.cli.main import build_parser

    assert R.runtime_names() == ("auto", *R.RUNTIMES)
    for command in ("upscale", "beam"):
        parser = build_parser([command])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        option = next(a for a in sub.choices[command]._actions if a.dest == "runtime")
        assert tuple(option.choices) == R.runtime_names(), command
    with pytest.raises(ValueError, match="runtime must be one of auto, keras, litert, litert-int8"):
        R.resolve_runtime("onnx")


def test_every_runtime_satisfies_the_interface(model, runtimes, image):
    radius = model_receptive_radius(model)
    assert {"keras", "litert", "litert-int8", "saved_model"} <= set(runtimes) <= {*R.RUNTIMES, "saved_model"}
    for name, runtime in runtimes.items():
        assert isinstance(runtime, Runtime), name
        assert runtime.name == name
        assert runtime.scale == 2 and runtime.receptive_radius == radius, name
        assert runtime.input_size is None, name
        assert as_runtime(runtime) is runtime
        batch = image[None, :16, :20]
        out = runtime.run_batch(batch)
        assert out.dtype == np.float32 and out.shape == (1, 32, 40, 3), name
        # uint8 pixels and the same pixels as float in [0, 1] are one input
        np.testing.assert_allclose(runtime.run_batch(batch.astype(np.float32) / 255.0), out, atol=1e-6, err_msg=name)
        two = runtime.run_batch(np.concatenate([batch, batch[:, ::-1]]))
        assert two.shape == (2, 32, 40, 3), name
        np.testing.assert_allclose(two[:1], out, atol=1e-6, err_msg=name)
    assert isinstance(as_runtime(model), KerasRuntime) and as_runtime(model).model is model


def test_tiled_equals_whole_for_every_runtime(runtimes, image):
    """30-pixel tiles with the receptive radius (11) as overlap: 3 x 5 tiles, each core surrounded by all the
    context it depends on, so the assembly gives the whole-image output (float round-off aside; bit for bit
    for the integer model)."""
    for name, runtime in runtimes.items():
        whole = super_resolve(runtime, image)
        calls = []
        tiled = super_resolve(runtime, image, tile=30, progress=lambda d, t: calls.append((d, t)))
        assert calls[-1] == (15, 15), name
        assert whole.shape == tiled.shape == (90, 116, 3), name
        atol = TILED_ATOL.get(name, 1e-4)
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=atol, err_msg=name)
        assert name == "keras-bf16" or np.mean(np.abs(tiled - whole) > 1e-4) < 1e-3, name
    int8 = runtimes["litert-int8"]  # and through drn_tf.upscale: the same pixels
    np.testing.assert_array_equal(upscale(image, model=int8, tile=30), upscale(image, model=int8, tile=None))


def test_a_fixed_size_runtime_is_tiled_by_the_same_assembly(model, image):
    """A fixed-size TFLite file declares input_size: the assembly cuts tiles of exactly that size."""
    from drn_tf.export.tflite import convert_tflite
    from drn_tf.inference.litert import LiteRTRuntime

    fixed = LiteRTRuntime(convert_tflite(model, "float32", input_size=(24, 30)), num_threads=2)
    dynamic = LiteRTRuntime(convert_tflite(model, "float32"), num_threads=2)
    assert fixed.input_size == (24, 30) and dynamic.input_size is None
    np.testing.assert_allclose(super_resolve(fixed, image), super_resolve(dynamic, image), atol=1e-4)
    np.testing.assert_allclose(fixed.predict(image), dynamic.predict(image), atol=1e-4)


def test_the_tile_rule_has_one_message(model, tmp_path, capsys):
    """tile 20 with the radius 11 as overlap breaks the rule: the API and drn upscale say the same words."""
    from PIL import Image

    from drn_tf.cli.main import main

    with pytest.raises(ValueError) as rule:
        check_tile(20, 11)
    message = str(rule.value)
    assert "too small" in message and "at least 23" in message
    image = np.random.default_rng(3).integers(0, 256, size=(40, 44, 3), dtype=np.uint8)
    with pytest.raises(ValueError) as api:
        upscale(image, model=model, tile=20)
    assert str(api.value) == message
    with pytest.raises(ValueError) as assembly:
        super_resolve(model, image, tile=20)
    assert str(assembly.value) == message
    src = tmp_path / "in.png"
    Image.fromarray(image).save(src)
    argv = ["upscale", str(src), "--preset", "drn_s_x2", "--runtime", "keras", "--tile", "20",
            "-o", str(tmp_path / "o.png")]
    assert main(argv) == 2
    assert f"drn upscale: error: {message}" in capsys.readouterr().err
    # the automatic tile size obeys the same rule (256-pixel tiles cannot keep 200 pixels each side)
    with pytest.raises(ValueError) as auto:
        upscale(np.zeros((600, 600, 3), np.uint8), model=model, tile="auto", tile_overlap=200)
    with pytest.raises(ValueError) as rule256:
        check_tile(256, 200)
    assert str(auto.value) == str(rule256.value)
