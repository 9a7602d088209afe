"""Y-channel PSNR/SSIM of the protocol: numpy functions, Keras metrics, TF reference ops."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from drn_tf.core.imresize import bicubic_degrade, bicubic_upscale, modcrop
from drn_tf.core.metrics import psnr_y, rgb_to_y, shave, ssim_y, to_uint8
from drn_tf.models.metrics import YPSNR, YSSIM


def _y_of(img, border):
    return shave(rgb_to_y(img), border).astype(np.float32)[..., None]


@pytest.fixture(scope="module")
def pairs():
    """(SR, HR) uint8 pairs of the bicubic baseline on three Set5 images (x2), of different quality."""
    from pathlib import Path

    from drn_tf.core.imageio import read_image
    from tests.conftest import DATA

    out = []
    for name in ("bird.png", "butterfly.png", "head.png"):
        hr = modcrop(read_image(Path(DATA) / "benchmark" / "Set5" / name), 2)[:200, :200]
        out.append((bicubic_upscale(bicubic_degrade(hr, 2), 2), hr))
    return out


def test_rgb_to_y_hand_values():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 150, 200]]], np.uint8)
    # 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded half up
    expected = [16, 235, 81, 145, 41, round(16 + (65.481 * 100 + 128.553 * 150 + 24.966 * 200) / 255)]
    np.testing.assert_array_equal(rgb_to_y(px)[0], expected)
    grey = np.array([[7, 200]], np.uint8)
    np.testing.assert_array_equal(rgb_to_y(grey), grey)  # single channel: used as it is
    np.testing.assert_array_equal(rgb_to_y(grey[..., None]), grey)
    # float input in [0, 1] is rounded to uint8 first
    np.testing.assert_array_equal(rgb_to_y(px.astype(np.float64) / 255.0), rgb_to_y(px))


def test_to_uint8_rounds_and_clips():
    x = np.array([-0.1, 0.0, 0.5 / 255, 0.49 / 255, 1.0, 1.3])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 1, 0, 255, 255])


def test_psnr_hand_values_and_border(rng):
    hr = rng.integers(10, 240, (40, 50, 1), dtype=np.uint8)
    assert psnr_y(hr + 1, hr, 2) == pytest.approx(10 * math.log10(255**2 / 1.0))  # 48.13 dB
    assert psnr_y(hr + 2, hr, 0) == pytest.approx(10 * math.log10(255**2 / 4.0))
    # errors only in the dropped border: infinite PSNR with border 3, finite with 2
    sr = hr.copy()
    sr[:3] += 5
    sr[:, -3:] += 5
    assert psnr_y(sr, hr, 3) == float("inf")
    assert math.isfinite(psnr_y(sr, hr, 2))
    with pytest.raises(ValueError):
        psnr_y(hr[:-1], hr, 2)


def test_ssim_identity_and_bounds(rng):
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert ssim_y(hr, hr, 4) == pytest.approx(1.0)
    values = []
    for amp in (5, 20, 60):
        noisy = np.clip(hr.astype(int) + rng.integers(-amp, amp + 1, hr.shape), 0, 255).astype(np.uint8)
        values.append(ssim_y(noisy, hr, 4))
    assert 1 > values[0] > values[1] > values[2] > 0  # more noise, lower SSIM
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(hr[:14, :14], hr[:14, :14], 2)


def test_numpy_matches_tf_image_on_y(pairs):
    # tf.image.psnr / tf.image.ssim compute the protocol's numbers when given the
    # rounded Y channel with the border dropped (ssim: Gaussian 11 / 1.5, 'valid').
    for sr, hr in pairs:
        a, b = _y_of(sr, 2), _y_of(hr, 2)
        assert float(tf.image.psnr(a, b, max_val=255.0)) == pytest.approx(psnr_y(sr, hr, 2), abs=1e-4)
        tf_ssim = tf.image.ssim(tf.constant(a), tf.constant(b), 255.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)
        # tf.image.ssim converts to float32 (E[x^2] - E[x]^2 at 255^2 loses digits): ~1e-5
        assert float(tf_ssim) == pytest.approx(ssim_y(sr, hr, 2), abs=5e-5)


def test_tf_image_on_rgb_is_not_the_protocol(pairs):
    # what tf.image.psnr computes on RGB directly is a different number (documented trap)
    sr, hr = pairs[0]
    rgb = float(tf.image.psnr(sr.astype(np.float32), hr.astype(np.float32), 255.0))
    assert abs(rgb - psnr_y(sr, hr, 2)) > 0.1


@pytest.mark.parametrize("border", [2, 3])
def test_keras_metrics_match_numpy_per_image_mean(pairs, border):
    srs = np.stack([p[0] for p in pairs]).astype(np.float32) / 255.0
    hrs = np.stack([p[1] for p in pairs]).astype(np.float32) / 255.0
    psnr_m, ssim_m = YPSNR(border=border), YSSIM(border=border)
    # two update calls (batches of 2 and 1): the mean is over images, not over batches
    for sl in (slice(0, 2), slice(2, 3)):
        psnr_m.update_state(hrs[sl], srs[sl])
        ssim_m.update_state(hrs[sl], srs[sl])
    want_p = np.mean([psnr_y(s, h, border) for s, h in pairs])
    want_s = np.mean([ssim_y(s, h, border) for s, h in pairs])
    assert float(psnr_m.result()) == pytest.approx(want_p, abs=2e-3)
    assert float(ssim_m.result()) == pytest.approx(want_s, abs=2e-5)
    # the batch-mean-of-batch-means would be different: images 0,1 vs image 2
    batch_means = [np.mean([psnr_y(s, h, border) for s, h in pairs[:2]]), psnr_y(*pairs[2], border)]
    assert abs(np.mean(batch_means) - want_p) > 0.05
    psnr_m.reset_state()
    assert float(psnr_m.result()) == 0.0


def test_keras_ops_psnr_pools_the_mse_over_the_batch(pairs):
    y_sr = np.stack([_y_of(s, 2) for s, _ in pairs])
    y_hr = np.stack([_y_of(h, 2) for _, h in pairs])
    per_image = [psnr_y(s, h, 2) for s, h in pairs]
    pooled_mse = np.mean((y_sr.astype(np.float64) - y_hr) ** 2)
    pooled = float(keras.ops.psnr(y_sr, y_hr, 255.0))
    assert pooled == pytest.approx(10 * math.log10(255**2 / pooled_mse), abs=1e-3)
    assert abs(pooled - np.mean(per_image)) > 0.1  # the images differ in quality
    m = YPSNR(border=2)
    m.update_state(np.stack([h for _, h in pairs]) / 255.0, np.stack([s for s, _ in pairs]) / 255.0)
    assert float(m.result()) == pytest.approx(np.mean(per_image), abs=2e-3)


def test_grey_inputs_are_used_as_they_are(rng):
    hr = rng.integers(20, 230, (2, 32, 32, 1)).astype(np.float32) / 255.0
    sr = hr + 1.0 / 255.0
    m = YPSNR(border=2)
    m.update_state(hr, sr)
    assert float(m.result()) == pytest.approx(10 * math.log10(255**2), abs=1e-3)


def test_metrics_in_model_evaluate_and_serialisation(pairs):
    # model.evaluate reports the protocol numbers with the Keras metrics
    lr = np.stack([bicubic_degrade(h, 2) for _, h in pairs]).astype(np.float32) / 255.0
    hr = np.stack([h for _, h in pairs]).astype(np.float32) / 255.0
    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.UpSampling2D(2, interpolation="nearest")])
    model.compile(loss="mae", metrics=[YPSNR(border=2), YSSIM(border=2)])
    res = model.evaluate(lr, hr, batch_size=2, verbose=0, return_dict=True)
    sr = [np.asarray(model(lr[i : i + 1]))[0] for i in range(len(lr))]
    want_p = np.mean([psnr_y(to_uint8(s), h, 2) for s, (_, h) in zip(sr, pairs)])
    want_s = np.mean([ssim_y(to_uint8(s), h, 2) for s, (_, h) in zip(sr, pairs)])
    assert res["psnr_y"] == pytest.approx(want_p, abs=2e-3)
    assert res["ssim_y"] == pytest.approx(want_s, abs=2e-5)
    clone = keras.metrics.deserialize(keras.metrics.serialize(YSSIM(border=4)))
    assert isinstance(clone, YSSIM) and clone.border == 4
