"""MATLAB-compatible bicubic resize against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drn_tf.core.imresize import (
    bicubic_degrade,
    bicubic_upscale,
    contributions,
    cubic,
    imresize,
    modcrop,
    output_size,
)

# Keys' cubic (a = -0.5) at the distances that occur below, worked out by hand:
# |x| <= 1: 1.5|x|^3 - 2.5|x|^2 + 1;  1 < |x| <= 2: -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2
K025 = 1.5 * 0.25**3 - 2.5 * 0.25**2 + 1  # 0.8671875
K075 = 1.5 * 0.75**3 - 2.5 * 0.75**2 + 1  # 0.2265625
K125 = -0.5 * 1.25**3 + 2.5 * 1.25**2 - 4 * 1.25 + 2  # -0.0703125
K175 = -0.5 * 1.75**3 + 2.5 * 1.75**2 - 4 * 1.75 + 2  # -0.0234375


def test_kernel_values():
    assert (K025, K075, K125, K175) == (0.8671875, 0.2265625, -0.0703125, -0.0234375)
    np.testing.assert_array_equal(cubic(np.array([0.25, -0.75, 1.25, -1.75, 0.0, 1.0, 2.0, 2.5])),
                                  [K025, K075, K125, K175, 1.0, 0.0, 0.0, 0.0])


def _dense_weights(in_len, out_len, scale):
    w, idx = contributions(in_len, out_len, scale, True)
    m = np.zeros((out_len, in_len))
    for o in range(out_len):
        np.add.at(m[o], idx[o], w[o])
    return m


def test_weight_vector_downscale_by_two_hand_computed():
    # Output pixel 2 (1-based) of 8 -> 4: centre u = 2*2 + 0.5*(1-2) = 3.5 (1-based input
    # coordinates); the kernel is widened to 8 taps: h(x) = 0.5*cubic(0.5x), so the taps at
    # 1-based inputs 0..7 sit at distances 3.5, 2.5, ..., -3.5, i.e. cubic(1.75), cubic(1.25),
    # cubic(0.75), cubic(0.25), ... times 0.5; they sum to 1. Input 0 mirrors onto input 1.
    expected = 0.5 * np.array([K175 + K125, K075, K025, K025, K075, K125, K175, 0.0])
    m = _dense_weights(8, 4, 0.5)
    np.testing.assert_allclose(m[1], expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-15)
    # and imresize applies exactly these weights: impulse responses
    for i in range(8):
        e = np.zeros((8, 1))
        e[i] = 1.0
        out = imresize(np.repeat(e, 8, axis=1), 0.5)
        assert out.shape == (4, 4)
        np.testing.assert_allclose(out[1, 0], expected[i], atol=1e-12)


def test_weight_vector_upscale_by_two_hand_computed():
    # Output pixel 3 (1-based) of 4 -> 8: u = 3/2 + 0.25 = 1.75; plain cubic at distances
    # 0.75 (input 1), -0.25 (input 2), -1.25 (input 3), 1.75 (input 0 -> mirrors to input 1)
    m = _dense_weights(4, 8, 2.0)
    np.testing.assert_allclose(m[2], [K175 + K075, K025, K125, 0.0], atol=1e-15)
    # output 6 of 6 -> 12: u = 6/2 + 0.25 = 3.25: inputs 2, 3, 4, 5 (1-based) at distances
    # 1.25, 0.25, -0.75, -1.75; no mirroring in the interior
    np.testing.assert_allclose(_dense_weights(6, 12, 2.0)[5], [0, K125, K025, K075, K175, 0], atol=1e-15)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0, 4.0, 0.7])
def test_constant_image_stays_constant(dtype, scale):
    img = np.full((13, 17, 3), 173, dtype)
    out = imresize(img, scale)
    assert out.dtype == (np.uint8 if dtype == np.uint8 else np.float64)
    assert out.shape[:2] == (math.ceil(13 * scale), math.ceil(17 * scale))
    np.testing.assert_allclose(out, 173, atol=1e-9)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25])
def test_ramp_is_reproduced_in_the_interior_and_keeps_its_mean(scale):
    # The cubic kernel reproduces linear functions, so away from the (mirrored) border
    # the output of a ramp is the ramp sampled at the output pixel centres, and the
    # mean of the interior is kept.
    s = round(1 / scale)
    n = 24 * s
    ramp = np.tile(np.arange(n, dtype=np.float64)[None, :] * 2.0 + 5.0, (4, 1))
    out = imresize(ramp, scale)
    centres = (np.arange(n // s) + 0.5) * s - 0.5  # 0-based input coordinate of each output pixel
    interior = slice(3, n // s - 3)
    np.testing.assert_allclose(out[:, interior], np.broadcast_to((centres * 2.0 + 5.0)[interior], out[:, interior].shape), atol=1e-9)
    np.testing.assert_allclose(out[:, interior].mean(), ramp[:, 3 * s : n - 3 * s].mean(), atol=1e-9)
    # at the border the symmetric padding bends the ramp: not reproduced there
    assert abs(out[0, 0] - (centres[0] * 2 + 5)) > 1e-3


@pytest.mark.parametrize("h,w", [(7, 9), (13, 5), (1, 3), (101, 99)])
@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0, 1.5])
def test_output_sizes_are_ceil(h, w, scale):
    expected = (math.ceil(h * scale), math.ceil(w * scale))
    assert output_size((h, w), scale) == expected
    out = imresize(np.zeros((h, w), np.uint8), scale)
    assert out.shape == expected


def test_explicit_output_shape_and_protocol_helpers(rng):
    hr = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    cropped = modcrop(hr, 3)
    assert cropped.shape == (36, 48, 3)
    np.testing.assert_array_equal(cropped, hr[:36, :48])
    lr = bicubic_degrade(cropped, 3)
    assert lr.shape == (12, 16, 3) and lr.dtype == np.uint8
    np.testing.assert_array_equal(lr, imresize(cropped, 1 / 3))
    assert bicubic_upscale(lr, 3).shape == (36, 48, 3)
    with pytest.raises(ValueError, match="modcrop"):
        bicubic_degrade(hr, 3)


def test_uint8_rounds_half_away_and_saturates():
    # an upscale of a step overshoots (negative lobes): uint8 output must be clipped, not wrapped
    step = np.zeros((8, 8), np.uint8)
    step[:, 4:] = 255
    up = imresize(step, 2.0)
    f = imresize(step.astype(np.float64), 2.0)
    assert f.max() > 255 and f.min() < 0
    np.testing.assert_array_equal(up, np.floor(np.clip(f, 0, 255) + 0.5).astype(np.uint8))


def test_channels_are_independent(rng):
    img = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = imresize(img, 0.5)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], imresize(img[..., c], 0.5))


@pytest.mark.parametrize("s", [2, 3, 4])
def test_round_trip_error_bounds(s, set5):
    from PIL import Image

    # smooth image: up xs then down xs comes back almost exactly (float, no rounding;
    # measured max error ~8e-4 for s = 2, 3, 4)
    y, x = np.mgrid[0:40, 0:48] / 40.0
    smooth = 100 + 50 * np.sin(2 * np.pi * x) * np.cos(np.pi * y)
    back = imresize(imresize(smooth, float(s)), 1 / s)
    assert back.shape == smooth.shape
    err = np.abs(back - smooth)[4:-4, 4:-4]
    assert err.max() < 5e-3 and err.mean() < 1e-3
    # a natural uint8 image: up then down is close (the antialiasing filter of the
    # downscale blurs a little: measured mean ~2.1, max 23 grey levels), while down then
    # up loses the detail bicubic cannot recover (measured mean 8.7 / 12.9 / 16.8)
    with Image.open(set5 / "butterfly.png") as im:
        hr = np.asarray(im.convert("RGB"))[:120, :120]
    ud = imresize(imresize(hr, float(s)), 1 / s).astype(np.float64)
    du = imresize(imresize(hr, 1 / s), float(s)).astype(np.float64)
    e_ud = np.abs(ud - hr)[8:-8, 8:-8]
    e_du = np.abs(du - hr)[8:-8, 8:-8]
    assert 0 < e_ud.mean() < 3 and e_ud.max() <= 40
    assert e_du.mean() > 3.5 * e_ud.mean()


def test_bad_inputs():
    with pytest.raises(ValueError):
        imresize(np.zeros((2, 2, 2, 2)), 0.5)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError):
        imresize(np.zeros((0, 4)), 0.5)
