"""int8 on regular structures: the generated image set (drn_tf.core.patterns) and the range search that
keeps stripes, checkerboards, grids and text within the int8 promise without losing it on photos."""

import numpy as np
import pytest

from drn_tf.core import patterns as P
from drn_tf.export import int8 as EI


def test_structure_images_are_deterministic_and_fit_every_scale():
    a, b = P.structure_images(), P.structure_images()
    assert list(a) == list(P.STRUCTURES) and len(a) >= 10
    for name, image in a.items():
        np.testing.assert_array_equal(image, b[name])
        assert image.dtype == np.uint8 and image.shape == (P.SIZE, P.SIZE, 3), name
        assert all(P.SIZE % s == 0 for s in (2, 3, 4))
        assert int(image.max()) - int(image.min()) >= 100, name  # strong contrast, not a flat picture
    # every image differs from every other one
    flat = [v.astype(np.int16) for v in a.values()]
    assert all(np.abs(flat[i] - flat[j]).mean() > 5 for i in range(len(flat)) for j in range(i))


def test_stripes_have_the_period_asked():
    row = P.stripes(8)[0, :, 0].astype(int)
    assert (row[:4] == 255).all() and (row[4:8] == 0).all()
    np.testing.assert_array_equal(row[:-8], row[8:])
    column = P.stripes(12, angle=90)[:, 0, 0].astype(int)
    np.testing.assert_array_equal(column[:-12], column[12:])
    assert (P.stripes(12, angle=90)[5] == P.stripes(12, angle=90)[5, 0]).all()  # horizontal: rows constant


def test_structure_pairs_follow_the_protocol():
    from drn_tf.core.imresize import bicubic_degrade

    for scale in (2, 3, 4):
        pairs = P.structure_pairs(scale, ["checker_6", "text"])
        for lr, hr in pairs.values():
            assert lr.shape == (P.SIZE // scale, P.SIZE // scale, 3) and lr.dtype == np.uint8
            np.testing.assert_array_equal(lr, bicubic_degrade(hr, scale))


def test_structure_crops_for_calibration():
    crops = P.structure_crops(6, 3, 32, seed=5)
    assert len(crops) == 6 and all(c.shape == (32, 32, 3) and c.dtype == np.float32 for c in crops)
    assert all(0.0 <= c.min() and c.max() <= 1.0 for c in crops)
    again = P.structure_crops(6, 3, 32, seed=5)
    assert all(np.array_equal(c, d) for c, d in zip(crops, again))
    assert not np.array_equal(crops[0], P.structure_crops(6, 3, 32, seed=6)[0])


def test_range_search_after_a_leaky_relu_clips_the_negative_side():
    """A pre-activation tensor read by a leaky ReLU: its negative side reaches the next tensor 20 times
    smaller, so the range measured after the activation clips it harder and gets a finer step."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.3, 0.2, 20000), -rng.exponential(0.8, 20000)]).astype(np.float32)
    leaky = lambda v: np.where(v >= 0, v, 0.05 * v)  # noqa: E731
    plain = EI.mse_range(values, values.min(), values.max())
    aware = EI.mse_range(values, values.min(), values.max(), after=leaky)
    assert aware[0] > plain[0] and aware[1] - aware[0] < plain[1] - plain[0]
    assert EI._quant_error(values, *aware, after=leaky) < EI._quant_error(values, *plain, after=leaky)


def test_range_search_weighs_the_extra_values():
    """Rare large values in ``extra`` (the structure crops) widen the range as their weight grows."""
    rng = np.random.default_rng(1)
    values = rng.normal(0, 0.1, 20000).astype(np.float32)
    extra = rng.normal(0, 0.6, 20000).astype(np.float32)
    lo, hi = min(values.min(), extra.min()), max(values.max(), extra.max())
    widths = [np.subtract(*EI.mse_range(values, lo, hi, extra=extra, weight=w)[::-1]) for w in (0.0, 0.1, 10.0)]
    assert widths[0] < widths[1] < widths[2]


@pytest.mark.slow
def test_structure_crops_cut_the_int8_loss_on_regular_structures(data_dir, monkeypatch):
    """drn_s_x2's int8 model (its bundled ranges, as ``--runtime litert-int8`` converts it): Set5 x2 within the
    int8 promise, and on the regular-structure images a smaller loss than ranges calibrated on the photos alone
    (no structure crops), which clip stripes and checkerboards."""
    from drn_tf import upscale
    from drn_tf.core.metrics import psnr_y
    from drn_tf.core.protocol import read_benchmark
    from drn_tf.export.tflite import convert_tflite
    from drn_tf.inference import runtimes as R
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.models.drn import DRN, bundled_model_path

    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("assets/drn_s_x2.keras (trained weights) not bundled")
    model = DRN.from_preset("drn_s_x2")
    photos = EI.calibration_images(data_dir / "train", scale=2)
    ranges = R.bundled_int8_ranges(model) or EI.int8_ranges(model, photos)
    current = LiteRTRuntime(convert_tflite(model, "int8", int8_ranges=ranges))
    monkeypatch.setattr(EI, "STRUCTURE_WEIGHT", 0.0)
    photos_only = LiteRTRuntime(convert_tflite(model, "int8", int8_ranges=EI.int8_ranges(model, photos)))

    def loss(runtime, pairs):
        return float(np.mean([psnr_y(upscale(lr, model=model), hr, 2) - psnr_y(upscale(lr, model=runtime), hr, 2)
                              for lr, hr in pairs]))

    set5 = read_benchmark(data_dir / "benchmark" / "Set5", 2)
    assert loss(current, zip(set5.lrs, set5.hrs)) <= 0.10
    structures = list(P.structure_pairs(2).values())
    assert loss(current, structures) < loss(photos_only, structures)


@pytest.mark.slow
def test_the_int8_runtime_keeps_regular_structures_within_the_promise(data_dir):
    """``--runtime litert-int8`` on drn_s_x2 (the shipped int8 file with saturation maps, the float32 file as
    fallback): within 0.10 dB of Keras on every regular-structure image, on held-out random structures and on
    Set5, with the float model running on a small share of the photos only."""
    from drn_tf import upscale
    from drn_tf.core.metrics import psnr_y
    from drn_tf.core.protocol import read_benchmark
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.models.drn import DRN, bundled_model_path

    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("assets/drn_s_x2.keras (trained weights) not bundled")
    model = DRN.from_preset("drn_s_x2")
    runtime = load_runtime(preset="drn_s_x2", runtime="litert-int8")
    assert runtime.maps, "the litert-int8 file carries no saturation maps"
    runtime.float_pixels = runtime.pixels = 0  # (a runtime other tests may have used)

    def loss(lr, hr):
        return psnr_y(upscale(lr, model=model), hr, 2) - psnr_y(upscale(lr, model=runtime), hr, 2)

    set5 = read_benchmark(data_dir / "benchmark" / "Set5", 2)
    assert np.mean([loss(lr, hr) for lr, hr in zip(set5.lrs, set5.hrs)]) <= 0.10
    assert runtime.float_pixels <= 0.10 * runtime.pixels  # photos stay (almost all) int8
    pairs = {**P.structure_pairs(2), **P.random_structure_pairs(2, 4, seed=2024)}
    losses = {name: loss(lr, hr) for name, (lr, hr) in pairs.items()}
    assert max(losses.values()) <= 0.10, losses
