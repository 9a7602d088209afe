"""``drn demo``: the sample photo, bicubic vs DRN, images and a comparison figure."""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from drn_tf.cli.commands.demo import SAMPLE, pick_crop
from drn_tf.cli.main import main

from paths import ROOT  # noqa: E402
BUNDLED_X2 = ROOT / "assets" / "drn_x2.keras"


def _psnrs(stdout):
    return [float(v) for v in re.findall(r"PSNR\s+([0-9.]+) dB", stdout)]


def test_sample_photo_is_bundled():
    assert SAMPLE.is_file()
    im = Image.open(SAMPLE)
    assert im.size == (512, 600) and im.mode == "RGB"
    assert "public domain" in (ROOT / "assets" / "README.md").read_text().lower()


def test_demo_with_a_model_file(tmp_path, capsys, model_files):
    from drn_tf.core.imresize import bicubic_degrade, bicubic_upscale
    from drn_tf.core.metrics import psnr_y

    out = tmp_path / "demo"
    rc = main(["demo", "--model", str(model_files[2]), "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bicubic_x2.png", "comparison_x2.png", "drn_x2.png", "input_lr_x2.png", "original.png"]
    assert str(out / "comparison_x2.png") in stdout
    hr = np.asarray(Image.open(out / "original.png"))
    lr = np.asarray(Image.open(out / "input_lr_x2.png"))
    bic = np.asarray(Image.open(out / "bicubic_x2.png"))
    sr = np.asarray(Image.open(out / "drn_x2.png"))
    assert hr.shape == (600, 512, 3) and lr.shape == (300, 256, 3) and bic.shape == sr.shape == hr.shape
    # the protocol: LR by MATLAB bicubic of the photo, baseline by MATLAB bicubic of the LR
    assert np.array_equal(lr, bicubic_degrade(hr, 2)) and np.array_equal(bic, bicubic_upscale(lr, 2))
    bic_psnr, sr_psnr = _psnrs(stdout)
    assert bic_psnr == pytest.approx(psnr_y(bic, hr, 2), abs=0.006)
    assert sr_psnr == pytest.approx(psnr_y(sr, hr, 2), abs=0.006)
    fig = Image.open(out / "comparison_x2.png")
    assert fig.format == "PNG" and fig.size[0] > 3 * fig.size[1]  # side by side
    assert not list(out.glob(".*.tmp*"))


def test_demo_scale_3_and_own_image(tmp_path, capsys, model_files):
    img = tmp_path / "mine.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 61, 3), dtype=np.uint8)).save(img)
    rc = main(["demo", "--model", str(model_files[3]), "--image", str(img), "--out", str(tmp_path / "o")])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert Image.open(tmp_path / "o" / "drn_x3.png").size == (60, 48)  # modcropped to a multiple of 3
    rc = main(["demo", "--model", str(model_files[3]), "--scale", "2", "--out", str(tmp_path / "p")])
    _, err = capsys.readouterr()
    assert rc == 2 and "is a x3 model, but x2 was asked for" in err
    rc = main(["demo", "--model", str(model_files[2]), "--image", str(tmp_path / "nope.png")])
    _, err = capsys.readouterr()
    assert rc == 2 and "nope.png: no such file" in err and "Traceback" not in err


def test_demo_without_bundled_model_says_so(tmp_path, capsys, monkeypatch):
    import drn_tf.models.drn as model_mod

    monkeypatch.setattr(model_mod, "bundled_model_path", lambda name: None)
    monkeypatch.chdir(tmp_path)
    rc = main(["demo"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.strip() == "drn demo: error: no trained model bundled for preset drn_x2; pass --model FILE"
    assert not (tmp_path / "drn-demo").exists()


def test_pick_crop_finds_the_detail():
    hr = np.zeros((120, 150, 3), np.uint8)
    bic = hr.copy()
    bic[70:90, 100:120] = 200  # bicubic is wrong only here
    y, x, n = pick_crop(hr, bic, 32)
    assert n == 32 and y <= 70 and y + n >= 90 and x <= 100 and x + n >= 120


@pytest.mark.skipif(not BUNDLED_X2.is_file(), reason="assets/drn_x2.keras (the trained x2 model) is not bundled yet")
def test_plain_demo_with_the_bundled_model(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["demo"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert (tmp_path / "drn-demo" / "comparison_x2.png").is_file()
    bic_psnr, sr_psnr = _psnrs(stdout)
    assert sr_psnr > bic_psnr + 0.5  # a trained DRN clearly beats bicubic on the sample
