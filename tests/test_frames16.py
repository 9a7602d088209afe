"""Every frame of animated GIF / APNG / WebP and multi-page TIFF; 16-bit PNG/TIFF stay 16-bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from drn_tf.cli.main import main


@pytest.fixture
def m2(model_files):
    return str(model_files[2])


def frames(n=3, h=8, w=10):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def drn(capsys, *argv):
    rc = main(["upscale", *map(str, argv), "--runtime", "keras"])
    return rc, capsys.readouterr().err


def test_gif_apng_webp_tiff_keep_every_frame_and_their_timing(tmp_path, capsys, m2):
    ims = frames()
    ims[0].save(tmp_path / "a.gif", save_all=True, append_images=ims[1:], duration=[100, 200, 300], loop=0,
                disposal=[1, 2, 1])
    ims[0].save(tmp_path / "b.png", save_all=True, append_images=ims[1:], duration=[100, 200, 300], loop=2,
                disposal=[0, 1, 0])
    ims[0].save(tmp_path / "c.webp", save_all=True, append_images=ims[1:], duration=[100, 200, 300], loop=0)
    ims[0].save(tmp_path / "d.tif", save_all=True, append_images=ims[1:])
    rc, err = drn(capsys, tmp_path / "a.gif", tmp_path / "b.png", tmp_path / "c.webp", tmp_path / "d.tif",
                  "--model", m2)
    assert rc == 0, err
    from drn_tf.core.frames import read_frames

    gif, apng = read_frames(tmp_path / "a_x2.gif"), read_frames(tmp_path / "b_x2.png")
    webp, tiff = read_frames(tmp_path / "c_x2.webp"), read_frames(tmp_path / "d_x2.tif")
    for f in (gif, apng, webp, tiff):
        assert len(f.images) == 3 and f.images[0].shape[:2] == (16, 20)
    assert gif.durations == apng.durations == webp.durations == [100, 200, 300]
    assert (gif.loop, apng.loop, webp.loop) == (0, 2, 0)
    assert gif.disposal == [1, 2, 1] and apng.disposal == [0, 1, 0]


def test_a_format_that_cannot_keep_frames_says_so_once(tmp_path, capsys, m2):
    ims = frames()
    ims[0].save(tmp_path / "a.gif", save_all=True, append_images=ims[1:], duration=100)
    rc, err = drn(capsys, tmp_path / "a.gif", "--model", m2, "--format", "jpg")
    assert rc == 0, err
    lines = [line for line in err.splitlines() if ": warning: " in line]
    assert len(lines) == 1 and "first of 3 frames" in lines[0]
    assert Image.open(tmp_path / "a_x2.jpg").size == (20, 16)


def png_bit_depth(path) -> int:
    return path.read_bytes()[24]  # IHDR bit depth


def test_16_bit_png_and_tiff_give_16_bit_outputs(tmp_path, capsys, m2):
    rng = np.random.default_rng(0)
    grey = (rng.random((12, 14)) * 65535).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    from drn_tf.core.imageio import png16, read_image

    colour = (rng.random((12, 14, 3)) * 65535).astype(np.uint16)
    (tmp_path / "colour.png").write_bytes(png16(colour))
    rc, err = drn(capsys, tmp_path / "grey.png", tmp_path / "colour.png", "--model", m2)
    assert rc == 0, err
    assert "8 bits" not in err
    assert Image.open(tmp_path / "grey_x2.png").mode == "I;16" and png_bit_depth(tmp_path / "grey_x2.png") == 16
    assert png_bit_depth(tmp_path / "colour_x2.png") == 16
    out = read_image(tmp_path / "colour_x2.png", keep_16bit=True)
    assert out.dtype == np.uint16 and out.shape == (24, 28, 3)
    # from the float model output: values that 8 bits cannot hold
    assert np.any(out % 257 != 0)
    assert np.array_equal(read_image(tmp_path / "colour.png", keep_16bit=True), colour)
