"""drn_tf.inference.upscale: seamless tiling, self-ensemble, channel layouts, model resolution."""

from __future__ import annotations

import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from drn_tf.core.imresize import imresize
from drn_tf.core.tiling import auto_tile, balanced_tile, tile_starts
from drn_tf.inference.upscale import super_resolve, upscale, upscale_array
from drn_tf.models.drn import DRN
from drn_tf.models.resolve import (
    ModelError,
    model_receptive_radius,
    model_scale,
    resolve_model,
)


def _sharp_model(preset):
    """A fresh small DRN with its conv kernels doubled: a freshly initialised
    model is so smooth that far-away pixels barely matter; doubled kernels make
    the whole receptive field count, so a too-small overlap is detectable."""
    m = DRN.from_preset(preset, load_weights=False)
    m.set_weights([w * 2.0 if w.ndim == 4 else w for w in m.get_weights()])
    return m


@pytest.fixture(scope="module")
def models():
    return {s: _sharp_model(f"drn_s_x{s}") for s in (2, 3)}


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(7).random((37, 53, 3), dtype=np.float32)


def test_tile_plan_partitions_with_context():
    rnd = random.Random(0)
    for _ in range(5000):
        m = rnd.randint(0, 20)
        t = rnd.randint(2 * m + 1, 90)
        n = rnd.randint(1, 500)
        plan = tile_starts(n, t, m)
        assert plan[0][1] == 0 and plan[-1][2] == n
        for (w0, c0, c1), nxt in zip(plan, plan[1:] + [None]):
            assert 0 <= w0 and w0 + min(t, n) <= n  # window inside the image, one shape
            assert w0 <= c0 < c1 <= w0 + min(t, n)
            if nxt is not None:
                assert c1 == nxt[1]
            if c0 > 0:
                assert c0 - w0 >= m
            if c1 < n:
                assert w0 + t - c1 >= m
        if n > t:  # no more tiles than needed
            assert len(plan) == max(2, -(-(n - 2 * m) // (t - 2 * m)))


def test_balanced_tile_keeps_count_and_shrinks():
    for n in (257, 513, 600, 1080, 1920):
        t = balanced_tile((n, n), 256, 15)
        assert t <= 256
        assert len(tile_starts(n, t, 15)) == len(tile_starts(n, 256, 15))
        # wasted context is smaller than with the full tile
        assert len(tile_starts(n, t, 15)) * t <= len(tile_starts(n, 256, 15)) * 256


@pytest.mark.parametrize("scale", [2, 3])
def test_tiled_equals_whole_image(models, image, scale):
    model = models[scale]
    r = model.receptive_radius
    assert r == model_receptive_radius(model) == 11
    whole = super_resolve(model, image)
    assert whole.shape == (37 * scale, 53 * scale, 3) and whole.dtype == np.float32
    # whole-image output is not clipped
    assert whole.min() < 0 or whole.max() > 1
    for tile in (2 * r + 3, 31, 40, 45):  # 45: tiles along the width only
        calls = []
        tiled = super_resolve(model, image, tile=tile, progress=lambda d, t: calls.append((d, t)))
        assert np.max(np.abs(tiled - whole)) <= 1e-4, tile
        assert len(calls) > 1 and calls[-1][0] == calls[-1][1]
    # odd sizes in the other orientation too
    odd = image[:29, :41]
    assert np.max(np.abs(super_resolve(model, odd, tile=27) - super_resolve(model, odd))) <= 1e-4


def test_overlap_below_receptive_radius_shows_seams(models, image):
    """The radius is tight: one pixel less context changes the result."""
    model = models[2]
    whole = super_resolve(model, image)
    short = super_resolve(model, image, tile=31, overlap=model.receptive_radius - 1)
    assert np.max(np.abs(short - whole)) > 1e-4


def test_tile_too_small_is_refused(models, image):
    with pytest.raises(ValueError, match="too small"):
        super_resolve(models[2], image, tile=2 * models[2].receptive_radius)


def test_self_ensemble_equivariant_and_tiles(models, image):
    model = models[2]
    x = image[:21, :26]
    se = super_resolve(model, x, self_ensemble=True)
    assert se.shape == (42, 52, 3)
    assert np.max(np.abs(se - super_resolve(model, x))) > 1e-3  # it does something
    # averaging all 8 transforms (each inverted) makes the result equivariant
    flip = super_resolve(model, x[:, ::-1], self_ensemble=True)
    assert np.max(np.abs(flip - se[:, ::-1])) <= 1e-4
    rot = super_resolve(model, np.rot90(x), self_ensemble=True)
    assert np.max(np.abs(rot - np.rot90(se))) <= 1e-4
    tiled = super_resolve(model, x, self_ensemble=True, tile=24)
    assert np.max(np.abs(tiled - se)) <= 1e-4


def test_upscale_array_layouts(models):
    model = models[2]
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (18, 23, 3), dtype=np.uint8)
    out = upscale_array(rgb, model)
    ref = super_resolve(model, rgb.astype(np.float32) / 255)
    assert out.dtype == np.uint8 and out.shape == (36, 46, 3)
    assert np.max(np.abs(out.astype(int) - np.floor(np.clip(ref, 0, 1) * 255 + 0.5))) <= 1

    grey = rng.integers(0, 256, (18, 23), dtype=np.uint8)
    g2 = upscale_array(grey, model)
    assert g2.shape == (36, 46) and g2.dtype == np.uint8
    g3 = upscale_array(grey[..., None], model)
    assert g3.shape == (36, 46, 1)
    rep = super_resolve(model, np.repeat(grey[..., None], 3, -1).astype(np.float32) / 255)
    assert np.max(np.abs(g2.astype(int) - np.floor(np.clip(rep.mean(-1), 0, 1) * 255 + 0.5))) <= 1

    alpha = rng.integers(0, 256, (18, 23), dtype=np.uint8)
    rgba = np.dstack([rgb, alpha])
    o4 = upscale_array(rgba, model)
    assert o4.shape == (36, 46, 4)
    assert np.array_equal(o4[..., :3], out)  # colour from the model, as without alpha
    bic = imresize(alpha.astype(np.float64) / 255, 2.0)
    assert np.max(np.abs(o4[..., 3].astype(int) - np.floor(np.clip(bic, 0, 1) * 255 + 0.5))) <= 1
    la = upscale_array(np.dstack([grey, alpha]), model)
    assert la.shape == (36, 46, 2) and np.array_equal(la[..., 0], g2) and np.array_equal(la[..., 1], o4[..., 3])

    # tiled and whole agree after rounding too (to 1 level at most)
    big = rng.integers(0, 256, (45, 50, 3), dtype=np.uint8)
    d = upscale_array(big, model, tile=30).astype(int) - upscale_array(big, model).astype(int)
    assert np.max(np.abs(d)) <= 1 and np.mean(d != 0) < 1e-3


def test_upscale_api_inputs(models):
    model = models[2]
    rng = np.random.default_rng(4)
    f = rng.random((12, 15, 3))
    u8 = upscale(f, model=model)
    assert u8.dtype == np.uint8 and u8.shape == (24, 30, 3)
    assert np.array_equal(upscale((f * 65535).round().astype(np.uint16), model=model).shape, u8.shape)
    with pytest.raises(ValueError, match="too small"):
        upscale(np.zeros((1, 5, 3), np.uint8), model=model)
    with pytest.raises(ValueError, match="image"):
        upscale(np.zeros((4, 5, 7), np.uint8), model=model)
    with pytest.raises(ModelError, match="x2 model, but x3"):
        upscale(f, scale=3, model=model)


def test_scale_and_radius_from_a_loaded_file(tmp_path, models):
    path = tmp_path / "m.keras"
    models[3].save(path)
    m = resolve_model(str(path), scale=3)
    assert model_scale(m) == 3 and model_receptive_radius(m) == 11
    with pytest.raises(ModelError, match="x3 model, but x2"):
        resolve_model(str(path), scale=2)


def test_no_bundled_model_refused_clearly(monkeypatch):
    import drn_tf.models.drn as model_mod

    monkeypatch.setattr(model_mod, "bundled_model_path", lambda name: None)
    with pytest.raises(ModelError, match="no trained model bundled for preset drn_x2; pass --model FILE"):
        resolve_model(None, None, None)
    with pytest.raises(ModelError, match="drn_s_x4"):
        upscale(np.zeros((8, 8, 3), np.uint8), preset="drn_s_x4")
    with pytest.raises(ModelError, match="unknown preset"):
        resolve_model(None, "nope", None)


def test_auto_tile():
    assert auto_tile((100, 100, 3), "auto", 11) is None
    assert auto_tile((1080, 1920, 3), "auto", 15) <= 256
    assert auto_tile((1080, 1920, 3), None) is None and auto_tile((10, 10), 0) is None
    assert auto_tile((10, 10), 40) == 40
