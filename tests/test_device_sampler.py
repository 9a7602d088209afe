"""drn_tf.data.device.DeviceSampler: training patches cut on the JAX device (``data.pipeline: device``).
Runs on JAX's CPU device here; the same jitted function runs on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")

from drn_tf.core.tiling import dihedral  # noqa: E402
from drn_tf.data.device import DeviceSampler  # noqa: E402

SIZES = [(30, 40), (20, 20), (50, 26), (17, 60)]


def images(scale, rng):
    lrs = [rng.integers(1, 256, size=(h, w, 3), dtype=np.uint8) for h, w in SIZES]  # 0 only in the padding
    hrs = [rng.integers(0, 256, size=(h * scale, w * scale, 3), dtype=np.uint8) for h, w in SIZES]
    return lrs, hrs


@pytest.mark.parametrize("scale", [2, 3])
def test_patches_are_aligned_crops_with_the_drawn_transform(scale):
    rng = np.random.default_rng(0)
    lrs, hrs = images(scale, rng)
    p = 16
    d = DeviceSampler(lrs, hrs, scale, patch_size=p, batch_size=32, seed=3)
    for step in (0, 7):
        lr, hr = (np.asarray(a) for a in d.batch(step))
        assert lr.shape == (32, p, p, 3) and hr.shape == (32, p * scale, p * scale, 3) and lr.dtype == np.float32
        for b, (i, top, left, t) in enumerate(d.specs(step)):
            h, w = SIZES[i]
            assert 0 <= top <= h - p and 0 <= left <= w - p  # inside the image, never the padding
            want_lr = dihedral(lrs[i][top : top + p, left : left + p], t)
            want_hr = dihedral(hrs[i][top * scale : (top + p) * scale, left * scale : (left + p) * scale], t)
            np.testing.assert_array_equal(np.rint(lr[b] * 255).astype(np.uint8), want_lr)
            np.testing.assert_array_equal(np.rint(hr[b] * 255).astype(np.uint8), want_hr)


def test_batches_are_a_function_of_seed_and_step():
    rng = np.random.default_rng(1)
    lrs, hrs = images(2, rng)
    a = DeviceSampler(lrs, hrs, 2, patch_size=16, batch_size=8, seed=5)
    b = DeviceSampler(lrs, hrs, 2, patch_size=16, batch_size=8, seed=5)
    np.testing.assert_array_equal(np.asarray(a.batch(11)[1]), np.asarray(b.batch(11)[1]))
    assert not np.array_equal(np.asarray(a.batch(11)[0]), np.asarray(a.batch(12)[0]))
    stream = a.stream(11)
    np.testing.assert_array_equal(np.asarray(next(stream)[0]), np.asarray(b.batch(11)[0]))
    np.testing.assert_array_equal(np.asarray(next(stream)[0]), np.asarray(b.batch(12)[0]))


def test_the_distribution_of_images_and_transforms():
    """Images drawn in proportion to their patch positions (as PatchSampler), all 8 transforms, or none."""
    rng = np.random.default_rng(2)
    lrs, hrs = images(2, rng)
    p = 16
    d = DeviceSampler(lrs, hrs, 2, patch_size=p, batch_size=256, seed=0)
    specs = np.concatenate([d.specs(g) for g in range(40)])  # 10240 patches
    positions = np.array([(h - p + 1) * (w - p + 1) for h, w in SIZES], float)
    freq = np.bincount(specs[:, 0], minlength=len(SIZES)) / len(specs)
    np.testing.assert_allclose(freq, positions / positions.sum(), atol=0.02)
    assert set(specs[:, 3]) == set(range(8))
    plain = DeviceSampler(lrs, hrs, 2, patch_size=p, batch_size=64, seed=0, augment=False)
    assert not plain.specs(0)[:, 3].any()


def test_bad_inputs():
    rng = np.random.default_rng(3)
    lrs, hrs = images(2, rng)
    with pytest.raises(ValueError, match="smaller than the patch size"):
        DeviceSampler(lrs, hrs, 2, patch_size=18)
    with pytest.raises(ValueError, match="HR size must be LR size x scale"):
        DeviceSampler(lrs, hrs, 3, patch_size=16)
    with pytest.raises(ValueError, match="non-zero number"):
        DeviceSampler([], [], 2)
