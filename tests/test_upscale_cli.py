"""``drn upscale``: inputs of every kind, bad inputs, safe writing, bounded memory."""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from drn_tf.cli import main


@pytest.fixture
def m2(model_files):
    return str(model_files[2])


def rgb(h=20, w=24, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, arr, **kw):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return path


def drn(capsys, *argv):
    rc = main(["upscale", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def error_lines(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert "Traceback" not in err
    return [l for l in lines if ": error: " in l]


def only_good_and_bad(tmp_path, capsys, m2, bad_name, bad_writer, reason):
    """A bad input next to a good one: one clear error line, the good one done, exit 1."""
    good = save(tmp_path / "good.png", rgb())
    bad = tmp_path / bad_name
    bad_writer(bad)
    rc, out, err = drn(capsys, bad, good, "--model", m2)
    assert rc == 1
    errors = error_lines(err)
    assert len(errors) == 1, err
    assert str(bad) in errors[0] and reason in errors[0].lower(), errors[0]
    assert (tmp_path / "good_x2.png").is_file()
    assert not list(tmp_path.glob(Path(bad_name).stem + "_x2*"))
    assert not list(tmp_path.glob(".*.tmp"))
    return errors[0]


# ---------------------------------------------------------------- good inputs


def test_file_folder_glob_and_layouts(tmp_path, capsys, m2):
    src = tmp_path / "in"
    save(src / "rgb.png", rgb())
    save(src / "grey.png", rgb()[..., 0])
    save(src / "rgba.png", np.dstack([rgb(), rgb(seed=1)[..., 0]]))
    Image.fromarray(rgb()).convert("P").save(src / "pal.png")
    save(src / "sub" / "photo.jpg", rgb(), quality=90)
    sixteen = (np.arange(20 * 24).reshape(20, 24) * 100).astype(np.uint16)
    Image.fromarray(sixteen).save(src / "deep.png")
    out = tmp_path / "out"
    rc, stdout, err = drn(capsys, src, "-o", out, "--model", m2)
    assert rc == 0, err
    assert "converted to 8 bits" in err and "deep.png" in err  # 16-bit: a warning, not an error
    modes = {p.relative_to(out).as_posix(): Image.open(p).mode for p in out.rglob("*.*")}
    assert modes == {
        "rgb_x2.png": "RGB",
        "grey_x2.png": "L",
        "rgba_x2.png": "RGBA",
        "pal_x2.png": "RGB",
        "deep_x2.png": "L",
        "sub/photo_x2.jpg": "RGB",
    }
    for p in out.rglob("*.*"):
        assert Image.open(p).size == (48, 40)
    # alpha by bicubic: a constant alpha stays constant
    save(tmp_path / "flat.png", np.dstack([rgb(), np.full((20, 24), 77, np.uint8)]))
    rc, _, _ = drn(capsys, tmp_path / "flat.png", "--model", m2)
    assert rc == 0
    a = np.asarray(Image.open(tmp_path / "flat_x2.png"))[..., 3]
    assert a.min() == a.max() == 77
    # glob, default output next to the input
    rc, stdout, _ = drn(capsys, str(src / "r*.png"), "--model", m2, "--format", "webp")
    assert rc == 0 and sorted(p.name for p in src.glob("*_x2.webp")) == ["rgb_x2.webp", "rgba_x2.webp"]
    assert Image.open(src / "rgba_x2.webp").mode == "RGBA"
    # a second run over the folder skips the earlier outputs (they look like NAME_x2.*)
    rc, stdout, err = drn(capsys, src, "-o", tmp_path / "out2", "--model", m2)
    assert rc == 0 and "skipped 2 file(s)" in stdout
    assert not list((tmp_path / "out2").glob("*_x2_x2*"))


def test_single_file_output_and_format(tmp_path, capsys, m2):
    src = save(tmp_path / "a.png", rgb())
    rc, stdout, _ = drn(capsys, src, "-o", tmp_path / "result.jpg", "--model", m2)
    assert rc == 0 and Image.open(tmp_path / "result.jpg").format == "JPEG"
    rc, _, err = drn(capsys, src, "-o", tmp_path / "r.png", "--format", "jpg", "--model", m2)
    assert rc == 2 and "--format" in err
    rc, _, err = drn(capsys, src, src, "-o", tmp_path / "many.png", "--model", m2)
    assert rc == 2 and "give a folder" in err and not (tmp_path / "many.png").exists()
    # --format jpg drops alpha with a warning
    save(tmp_path / "t.png", np.dstack([rgb(), rgb()[..., 0]]))
    rc, _, err = drn(capsys, tmp_path / "t.png", "--format", "jpg", "--model", m2)
    assert rc == 0 and "alpha channel dropped" in err
    assert Image.open(tmp_path / "t_x2.jpg").mode == "RGB"


def test_exif_orientation_applied(tmp_path, capsys, m2):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(rgb(20, 30)).save(tmp_path / "o.jpg", exif=exif)
    rc, _, _ = drn(capsys, tmp_path / "o.jpg", "--model", m2)
    assert rc == 0
    assert Image.open(tmp_path / "o_x2.jpg").size == (40, 60)  # upright: 20 wide, 30 high, x2


def test_tiled_cli_matches_whole(tmp_path, capsys, m2):
    src = save(tmp_path / "big.png", rgb(61, 75, seed=5))
    assert drn(capsys, src, "-o", tmp_path / "whole.png", "--tile", "0", "--model", m2)[0] == 0
    assert drn(capsys, src, "-o", tmp_path / "tiled.png", "--tile", "30", "--model", m2)[0] == 0
    a = np.asarray(Image.open(tmp_path / "whole.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "tiled.png")).astype(int)
    assert a.shape == b.shape == (122, 150, 3)
    assert np.max(np.abs(a - b)) <= 1 and np.mean(a != b) < 1e-3
    rc, _, err = drn(capsys, src, "--tile", "30", "--tile-overlap", "3", "--model", m2)
    assert rc == 2 and "receptive radius" in err
    rc, _, err = drn(capsys, src, "--tile", "12", "--model", m2)
    assert rc == 2 and "too small" in err


# ---------------------------------------------------------------- bad inputs


def test_missing_path(tmp_path, capsys, m2):
    only_good_and_bad(tmp_path, capsys, m2, "nope.png", lambda p: None, "no such file")


def test_glob_without_matches(tmp_path, capsys, m2):
    save(tmp_path / "good.png", rgb())
    rc, _, err = drn(capsys, tmp_path / "zz*.png", tmp_path / "good.png", "--model", m2)
    assert rc == 1 and "no files match" in error_lines(err)[0]


def test_folder_without_images(tmp_path, capsys, m2):
    def make(p):
        p.mkdir()
        (p / "notes.txt").write_text("hi")

    only_good_and_bad(tmp_path, capsys, m2, "empty_dir", make, "no images")


def test_zero_byte_file(tmp_path, capsys, m2):
    only_good_and_bad(tmp_path, capsys, m2, "zero.png", lambda p: p.write_bytes(b""), "empty file")


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_image(tmp_path, capsys, m2, ext):
    def make(p):
        save(p, rgb(64, 64, seed=3))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    only_good_and_bad(tmp_path, capsys, m2, f"cut.{ext}", make, "truncated")


def test_not_an_image(tmp_path, capsys, m2):
    only_good_and_bad(tmp_path, capsys, m2, "text.jpg", lambda p: p.write_text("not a picture\n" * 10), "not an image")


def test_too_small(tmp_path, capsys, m2):
    only_good_and_bad(tmp_path, capsys, m2, "line.png", lambda p: save(p, rgb(1, 5)), "too small")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@pytest.mark.parametrize("side", [15_000, 100_000])  # over our 200 Mpx limit; over PIL's own limit
def test_decompression_bomb_refused_before_allocating(tmp_path, capsys, m2, side):
    def make(p):
        ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
        idat = zlib.compress(b"\0" * 1000)
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    line = only_good_and_bad(tmp_path, capsys, m2, "bomb.png", make, "pixels")
    assert "decompression bomb" in line.lower() and "refused" in line
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300  # the image itself would be 0.7 GB / 30 GB


def test_model_for_another_scale(tmp_path, capsys, model_files):
    src = save(tmp_path / "a.png", rgb())
    rc, _, err = drn(capsys, src, "--model", model_files[4], "--scale", "2")
    assert rc == 2 and error_lines(err) == [f"drn upscale: error: {model_files[4]} is a x4 model, but x2 was asked for (--scale 2)"]
    assert not (tmp_path / "a_x2.png").exists()
    rc, _, _ = drn(capsys, src, "--model", model_files[4])  # the model's own scale by default
    assert rc == 0 and Image.open(tmp_path / "a_x4.png").size == (96, 80)


def test_missing_and_corrupt_model(tmp_path, capsys, model_files):
    src = save(tmp_path / "a.png", rgb())
    rc, _, err = drn(capsys, src, "--model", tmp_path / "none.keras")
    assert rc == 2 and "model file not found" in error_lines(err)[0]
    cut = tmp_path / "cut.keras"
    cut.write_bytes(model_files[2].read_bytes()[:5000])
    rc, _, err = drn(capsys, src, "--model", cut)
    assert rc == 2 and str(cut) in error_lines(err)[0] and "corrupt" in err
    junk = tmp_path / "junk.keras"
    import zipfile

    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("config.json", "{not json")
    rc, _, err = drn(capsys, src, "--model", junk)
    assert rc == 2 and "cannot load model" in error_lines(err)[0]
    assert not (tmp_path / "a_x2.png").exists()


def test_no_bundled_model(tmp_path, capsys, monkeypatch):
    import drn_tf.model as model_mod

    monkeypatch.setattr(model_mod, "bundled_model_path", lambda name: None)
    rc, _, err = drn(capsys, save(tmp_path / "a.png", rgb()))
    assert rc == 2 and error_lines(err) == ["drn upscale: error: no trained model bundled for preset drn_x2; pass --model FILE"]


def test_unwritable_output_folder(tmp_path, capsys, m2):
    src = save(tmp_path / "a.png", rgb())
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    rc, _, err = drn(capsys, src, src, "-o", blocker / "out", "--model", m2)
    assert rc == 2 and "cannot create output folder" in error_lines(err)[0]
    rc, _, err = drn(capsys, src, "-o", blocker / "out.png", "--model", m2)
    assert rc == 2 and "not a folder" in err


def test_read_only_output_folder(tmp_path, capsys, m2):
    src = save(tmp_path / "a.png", rgb())
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes (covered by test_unwritable_output_folder)")
        rc, _, err = drn(capsys, src, "-o", ro, "--model", m2)
        assert rc == 2 and "not writable" in err
    finally:
        ro.chmod(0o755)


def test_output_equal_to_input(tmp_path, capsys, m2):
    src = save(tmp_path / "a.png", rgb())
    before = src.read_bytes()
    for flags in ([], ["--overwrite"]):
        rc, _, err = drn(capsys, src, "-o", src, "--model", m2, *flags)
        assert rc == 1 and "is the input file itself" in error_lines(err)[0]
        assert src.read_bytes() == before


def test_never_overwrites_without_flag_nor_an_input(tmp_path, capsys, m2):
    a = save(tmp_path / "a.png", rgb())
    existing = tmp_path / "a_x2.png"
    existing.write_bytes(b"keep me")
    rc, _, err = drn(capsys, a, "--model", m2)
    assert rc == 1 and "exists (pass --overwrite" in error_lines(err)[0]
    assert existing.read_bytes() == b"keep me"
    # a.png's output is a_x2.png, which is itself an input of this run: refused even with --overwrite
    save(existing, rgb(seed=9))
    kept = existing.read_bytes()
    rc, _, err = drn(capsys, a, existing, "--model", m2, "--overwrite")
    assert rc == 1 and "another input" in err and existing.read_bytes() == kept
    assert (tmp_path / "a_x2_x2.png").is_file()  # the other input was still processed
    existing.unlink()
    (tmp_path / "a_x2_x2.png").unlink()
    existing.write_bytes(b"old")
    rc, _, _ = drn(capsys, a, "--model", m2, "--overwrite")
    assert rc == 0 and Image.open(existing).size == (48, 40)


def test_failed_write_leaves_nothing(tmp_path, capsys, m2, monkeypatch):
    src = save(tmp_path / "a.png", rgb())

    def broken_save(self, fp, format=None, **kw):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    rc, _, err = drn(capsys, src, "--model", m2)
    assert rc == 1 and "disk full" in error_lines(err)[0] and "a_x2.png" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_bad_inputs_in_a_real_process(tmp_path, m2):
    """The installed entry point: one line per bad input, no traceback, others done."""
    good = save(tmp_path / "good.png", rgb())
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-m", "drn_tf.cli", "upscale", str(tmp_path / "missing.png"), str(tmp_path / "zero.png"),
         str(tmp_path / "text.png"), str(good), "--model", m2],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert all(l.startswith("drn upscale: ") for l in lines), proc.stderr
    assert sum(": error: " in l for l in lines) == 3
    assert (tmp_path / "good_x2.png").is_file()


def test_progress_bar_on_a_terminal():
    import io

    from drn_tf.commands.upscale import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    p = Progress(3, stream=stream)
    p.start(2, "photo.png")
    p.tile(5, 20)
    text = stream.getvalue()
    assert "2/3 photo.png" in text and "tiles" in text and "5/20" in text and text.startswith("\r")
    p.clear()
    assert stream.getvalue().endswith("\r")
    quiet = Tty()
    Progress(3, quiet=True, stream=quiet).tile(1, 2)
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------- memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_folder_of_200_images_flat_memory(tmp_path, model_files):
    from drn_tf.commands.upscale import Options, Progress, expand_inputs, upscale_files
    from drn_tf.inference import resolve_model

    src = tmp_path / "in"
    sizes = [(16, 16), (16, 21), (21, 16), (24, 24)]
    rng = np.random.default_rng(0)
    for i in range(200):
        h, w = sizes[i % 4]
        save(src / f"img{i:03d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    plan = expand_inputs([src], 2)
    assert len(plan.jobs) == 200 and not plan.errors
    model = resolve_model(str(model_files[2]), scale=2)
    rss = {}

    def on_image(i, job, ok):
        assert ok
        if i in (20, 200):
            rss[i] = _rss_mib()

    opts = Options(scale=2, out=tmp_path / "out", tile="auto", tile_overlap=11, quiet=True)
    written, failed = upscale_files(plan.jobs, model, opts, on_image=on_image, progress=Progress(200, quiet=True))
    assert (written, failed) == (200, 0)
    assert len(list((tmp_path / "out").glob("*_x2.png"))) == 200
    print("RSS MiB after image 20 / 200:", rss)
    assert rss[200] <= rss[20] * 1.10, rss
