"""Any output size: --outscale / --width / --height / --max-side, chained models, exact sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from drn_tf.cli.main import main
from drn_tf.inference.outsize import SizeRequest, model_chain, preset_for_scale


@pytest.fixture
def m2(model_files):
    return str(model_files[2])


def test_chain_is_the_smallest_product_then_fewest_models():
    assert model_chain(1.5) == (2,) and model_chain(2.5) == (3,) and model_chain(4) == (4,)
    assert model_chain(6) == (2, 3) and model_chain(8) == (2, 4) and model_chain(5) == (2, 3)
    assert model_chain(9) == (3, 3) and model_chain(16) == (4, 4) and model_chain(0.5) == ()
    assert model_chain(8, (3,)) == (3, 3)
    with pytest.raises(ValueError, match="more than"):
        model_chain(1000)


def test_size_request_targets_and_labels():
    assert SizeRequest(outscale=1.5).target(30, 21) == (45, 32)  # 31.5 rounds half up
    assert SizeRequest(width=1000).target(500, 300) == (1000, 600)
    assert SizeRequest(height=150).target(500, 300) == (250, 150)
    assert SizeRequest(width=64, height=64).target(500, 300) == (64, 64)  # an exact box
    assert SizeRequest(max_side=100).target(50, 20) == (100, 40)
    assert [SizeRequest(outscale=1.5).label(), SizeRequest(width=9).label(), SizeRequest(max_side=7).label(),
            SizeRequest(width=4, height=3).label()] == ["x1.5", "w9", "max7", "4x3"]
    with pytest.raises(ValueError):
        SizeRequest(outscale=2, width=3)
    assert preset_for_scale("drn_s_x2", 4) == "drn_s_x4" and preset_for_scale("drn_s_x2_photo", 3) == "drn_s_x3_photo"


@pytest.mark.parametrize("argv, name, size", [
    (["--outscale", "1.5"], "a_x1.5.png", (45, 32)),
    (["--width", "100"], "a_w100.png", (100, 70)),
    (["--height", "50"], "a_h50.png", (71, 50)),
    (["--width", "64", "--height", "40"], "a_64x40.png", (64, 40)),
    (["--max-side", "80"], "a_max80.png", (80, 56)),
])
def test_cli_gives_exactly_the_size_asked(tmp_path, capsys, m2, argv, name, size):
    src = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8)).save(src)
    rc = main(["upscale", str(src), "--model", m2, "--runtime", "keras", "-q", *argv])
    assert rc == 0, capsys.readouterr().err
    assert Image.open(tmp_path / name).size == size


def test_scale_and_a_size_exclude_each_other(tmp_path, capsys, m2):
    src = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src)
    assert main(["upscale", str(src), "--model", m2, "--scale", "2", "--outscale", "3"]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main(["upscale", str(src), "--model", m2, "--outscale", "-1"]) == 2


def test_python_api_chains_bundled_models_for_x8():
    import drn_tf

    lr = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    assert drn_tf.upscale(lr, outscale=8, preset="drn_s_x2").shape == (80, 96, 3)
    assert drn_tf.upscale(lr, size=(30, None), preset="drn_s_x2").shape == (25, 30, 3)
    grey16 = (np.arange(120).reshape(10, 12) * 500).astype(np.uint16)
    out = drn_tf.upscale(grey16, outscale=1.5, preset="drn_s_x2")
    assert out.dtype == np.uint16 and out.shape == (15, 18)


@pytest.mark.slow
def test_x8_by_chaining_beats_bicubic_on_set5(set5):
    """drn_s x2 then x4, then bicubic to the exact size, against bicubic x8 on the same LR (the protocol)."""
    from drn_tf.core.imageio import list_images, read_image
    from drn_tf.core.imresize import imresize
    from drn_tf.core.metrics import psnr_y
    from drn_tf.inference.picture import Upscaler, upscale_image
    from drn_tf.inference.runtimes import load_runtime

    models = {s: load_runtime(None, f"drn_s_x{s}", s, "keras") for s in (2, 4)}
    up = Upscaler(runtime_for=models.__getitem__, scale=2, request=SizeRequest(outscale=8))
    sr_scores, bic_scores = [], []
    for f in list_images(set5):
        hr = read_image(f, mode="rgb")
        hr = hr[: hr.shape[0] // 8 * 8, : hr.shape[1] // 8 * 8]
        lr = imresize(hr, 1 / 8, output_shape=(hr.shape[0] // 8, hr.shape[1] // 8))
        sr = upscale_image(lr, up)
        assert sr.shape == hr.shape
        sr_scores.append(psnr_y(sr, hr, 8))
        bic_scores.append(psnr_y(imresize(lr, 8.0, output_shape=hr.shape[:2]), hr, 8))
    assert np.mean(sr_scores) > np.mean(bic_scores) + 0.3, (np.mean(sr_scores), np.mean(bic_scores))
