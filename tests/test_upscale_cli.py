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

from drn_tf.cli.main import main
from process_helpers import wait_for_library


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
    assert "8 bits" not in err  # 16-bit grey: a 16-bit output
    modes = {p.relative_to(out).as_posix(): Image.open(p).mode for p in out.rglob("*.*")}
    assert modes == {
        "rgb_x2.png": "RGB",
        "grey_x2.png": "L",
        "rgba_x2.png": "RGBA",
        "pal_x2.png": "RGB",
        "deep_x2.png": "I;16",
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
    import drn_tf.models.drn as model_mod

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

    from drn_tf.cli.commands.upscale.report import Progress

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
    from drn_tf.cli.commands.upscale.loop import upscale_files
    from drn_tf.cli.commands.upscale.options import Options
    from drn_tf.cli.commands.upscale.report import Progress
    from drn_tf.inference.files import expand_inputs
    from drn_tf.models.resolve import resolve_model

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


# ---------------------------------------------------------------- start-up order, signals, pipes


def _no_model_loading(monkeypatch):
    """Loading the backend or the model fails the test."""
    import drn_tf.models.backend
    import drn_tf.models.resolve

    def boom(*a, **k):
        raise AssertionError("the model was loaded although nothing was left to do")

    monkeypatch.setattr(drn_tf.models.backend, "import_backend_quietly", boom)
    monkeypatch.setattr(drn_tf.models.resolve, "resolve_model", boom)


def test_output_problems_found_before_the_model_loads(tmp_path, capsys, m2, monkeypatch):
    a = save(tmp_path / "a.png", rgb())
    (tmp_path / "a_x2.png").write_bytes(b"keep me")
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _no_model_loading(monkeypatch)
    rc, _, err = drn(capsys, a, "--model", m2)  # existing output, no --overwrite
    assert rc == 1 and "exists (pass --overwrite" in error_lines(err)[0]
    rc, _, err = drn(capsys, a, a, "-o", blocker / "out", "--model", m2)  # folder that cannot be created
    assert rc == 2 and "cannot create output folder" in error_lines(err)[0]
    rc, _, err = drn(capsys, a, "-o", a, "--preset", "drn_x2")  # output = input
    assert rc == 1 and "is the input file itself" in err
    assert (tmp_path / "a_x2.png").read_bytes() == b"keep me"


def test_skip_existing_resumes_a_folder_job(tmp_path, capsys, m2):
    src = tmp_path / "in"
    for i in range(3):
        save(src / f"p{i}.png", rgb(seed=i))
    out = tmp_path / "out"
    rc, _, _ = drn(capsys, src, "-o", out, "--model", m2)
    assert rc == 0
    rc, stdout, err = drn(capsys, src, "-o", out, "--model", m2)  # a rerun without the flag: refused, said once
    (line,) = error_lines(err)
    assert rc == 1 and "3 outputs exist" in line and "--skip-existing" in line and "--overwrite" in line
    (out / "p1_x2.png").unlink()
    (out / "p2_x2.png").write_bytes(b"finished earlier")
    before = (out / "p0_x2.png").stat().st_mtime_ns
    rc, stdout, err = drn(capsys, src, "-o", out, "--model", m2, "--skip-existing")
    assert rc == 0, err
    assert "upscaled 1 input(s) x2; 2 skipped (output exists)" in stdout
    assert Image.open(out / "p1_x2.png").size == (48, 40)
    assert (out / "p0_x2.png").stat().st_mtime_ns == before and (out / "p2_x2.png").read_bytes() == b"finished earlier"
    with pytest.raises(SystemExit) as exc:
        main(["upscale", str(src), "--model", m2, "--skip-existing", "--overwrite"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_quality_for_jpeg_and_webp(tmp_path, capsys, m2):
    src = save(tmp_path / "a.png", rgb(40, 48))
    sizes = {}
    for fmt in ("jpg", "webp"):
        for q in (20, None):
            name = tmp_path / f"q{q}.{fmt}"
            rc, _, err = drn(capsys, src, "-o", name, "--model", m2, *(["--quality", q] if q else []))
            assert rc == 0, err
            sizes[fmt, q] = name.stat().st_size
        assert sizes[fmt, 20] < 0.7 * sizes[fmt, None]  # default stays the high quality of before (95)
    rc, _, err = drn(capsys, src, "-o", tmp_path / "bad.jpg", "--model", m2, "--quality", "0")
    assert rc == 2 and "--quality" in error_lines(err)[0]


def test_icc_exif_dpi_kept_and_orientation_reset(tmp_path, capsys, m2):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "DRN test camera"  # Make
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(rgb(20, 30)).save(tmp_path / "photo.jpg", exif=exif, icc_profile=icc, dpi=(300, 300), quality=95)
    for out_name in ("photo_x2.jpg", "as.png", "as.webp"):
        args = [tmp_path / "photo.jpg", "--model", m2]
        if out_name != "photo_x2.jpg":
            args += ["-o", tmp_path / out_name]
        rc, _, err = drn(capsys, *args)
        assert rc == 0, err
        im = Image.open(tmp_path / out_name)
        assert im.size == (40, 60)  # upright, x2
        assert im.info.get("icc_profile") == icc, out_name
        written = im.getexif()
        assert written.get(0x010F) == "DRN test camera", out_name
        assert written.get(0x0112, 1) == 1, out_name  # pixels already upright: no second rotation by viewers
        if out_name != "as.webp":  # WebP has no DPI field
            assert tuple(round(v) for v in im.info["dpi"]) == (300, 300), out_name


def test_frames_bit_depth_and_gif_output_are_told(tmp_path, capsys, m2):
    frames = [Image.fromarray(rgb(seed=i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    deep = (np.random.default_rng(0).integers(0, 65536, (20, 24, 3))).astype(">u2")
    raw = b"".join(b"\0" + deep[i].tobytes() for i in range(20))
    (tmp_path / "deep48.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 24, 20, 16, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")
    )
    errs = {}
    for name in ("anim.gif", "pages.tif", "deep48.png"):
        rc, out, errs[name] = drn(capsys, tmp_path / name, "--model", m2)
        assert rc == 0, errs[name]
    # every frame and page; 16 bits kept; GIF output palette-quantised, and said so (only there)
    assert "3 frames" in out or Image.open(tmp_path / "pages_x2.tif").n_frames == 3
    assert Image.open(tmp_path / "anim_x2.gif").n_frames == 3
    assert (tmp_path / "deep48_x2.png").read_bytes()[24] == 16
    assert "anim_x2.gif" in errs["anim.gif"] and "palette-quantised" in errs["anim.gif"]
    assert "palette-quantised" not in errs["pages.tif"] + errs["deep48.png"]
    assert "first" not in "".join(errs.values()) and "8 bits" not in errs["deep48.png"]
    assert Image.open(tmp_path / "anim_x2.gif").mode == "P"


def test_missing_input_with_an_output_file_is_no_such_file(tmp_path, capsys, m2):
    rc, _, err = drn(capsys, tmp_path / "nope.png", "-o", tmp_path / "out.png", "--model", m2)
    assert rc == 1
    (line,) = error_lines(err)
    assert line.endswith("nope.png: no such file or directory")  # not an -o complaint


def test_fifo_is_not_a_regular_file(tmp_path, capsys, m2):
    line = only_good_and_bad(tmp_path, capsys, m2, "pipe.png", os.mkfifo, "not a regular file")  # and no hang
    assert "empty file" not in line


def test_quiet_prints_what_its_help_says(tmp_path, capsys, m2):
    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "no summary unless something failed" in help_text
    from drn_tf.models.presets import PRESETS

    assert all(name in help_text for name in PRESETS)  # the presets are listed
    rc, out, err = drn(capsys, save(tmp_path / "a.png", rgb()), "--model", m2, "-q")
    assert rc == 0 and out == "" and not error_lines(err)


def _run_cli_process(args, **kw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.Popen([sys.executable, "-c", kw.pop("code", "import sys; from drn_tf.cli.main import main; sys.exit(main())"),
                             "upscale", *map(str, args)], env=env, text=True, **kw)


@pytest.mark.slow
def test_sigterm_mid_write_removes_the_temporary_file(tmp_path, m2):
    import signal
    import time

    save(tmp_path / "a.png", rgb())
    # the image is encoded in memory, then written to a temporary file beside the output
    # (drn_tf.core.utils.write_atomic): stall the write there, after the bytes, before the rename
    code = (
        "import os, sys, time\n"
        "real_fsync = os.fsync\n"
        "def slow_fsync(fd):\n"
        "    real_fsync(fd); time.sleep(120)\n"
        "os.fsync = slow_fsync\n"
        "from drn_tf.cli.main import main\n"
        "sys.exit(main())\n"
    )
    proc = _run_cli_process([tmp_path / "a.png", "--model", m2], code=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob(".a_x2.png.tmp*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(tmp_path.glob(".a_x2.png.tmp*")), "the write never started"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


@pytest.mark.slow
def test_closed_stdout_stops_quietly(tmp_path, m2):
    src = tmp_path / "in"
    for i in range(12):
        save(src / f"p{i:02d}.png", rgb(seed=i))
    proc = _run_cli_process([src, "-o", tmp_path / "out", "--model", m2], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert "p00.png" in first
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "error" not in err and "failed" not in err, err
    done = sorted((tmp_path / "out").glob("*.png"))
    assert 2 <= len(done) < 12  # the image whose line could not be printed was written; then it stopped
    for p in done:
        assert Image.open(p).size == (48, 40)
    assert not list((tmp_path / "out").glob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("signame, rc, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_while_tensorflow_imports(tmp_path, m2, signame, rc, word):
    """Ctrl-C or SIGTERM while TensorFlow is being imported: one line and the right status (an interrupt
    raised inside TensorFlow's import could be swallowed there and the command ran on)."""
    import signal

    proc = _run_cli_process([save(tmp_path / "a.png", rgb()), "--model", m2], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for_library(proc, "libtensorflow")  # until TensorFlow's library is being loaded
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == rc and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"drn upscale: {word}"
    assert not (tmp_path / "a_x2.png").exists()
