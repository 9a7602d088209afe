"""``drn beam`` / :mod:`drn_tf.inference.beam`: the Apache Beam pipeline on the DirectRunner.

The outputs are compared byte for byte with ``drn upscale``'s for the same
(freshly initialised, so cheap) drn_s_x2 model. apache-beam comes with the
``test`` extra; in CI (CI=true) a missing apache-beam fails instead of skipping.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

if os.environ.get("CI"):
    import apache_beam  # noqa: F401  (CI installs the test extra: it must run there)
else:
    pytest.importorskip("apache_beam", reason="apache-beam not installed (pip install -e '.[test]')")

from drn_tf.cli.main import main  # noqa: E402
from drn_tf.inference import beam as B  # noqa: E402

# 20 good images: (name, height, width, mode); one above 512x512 so drn upscale's
# automatic tiling (and so the handler's) is exercised.
GOOD = (
    [(f"rgb{i:02d}.png", 12 + 5 * i, 40 - i, "RGB") for i in range(9)]
    + [("big_tiled.png", 530, 500, "RGB")]
    + [(f"grey{i}.png", 17 + 3 * i, 23, "L") for i in range(3)]
    + [(f"alpha{i}.png", 21, 15 + 4 * i, "RGBA") for i in range(3)]
    + [(f"sub/photo{i}.jpg", 30, 26 + 2 * i, "RGB") for i in range(3)]
    + [("sub/deeper/bitmap.bmp", 19, 33, "RGB")]
)
BAD = ("truncated.png", "sub/text.jpg")


def _extras(name: str) -> dict:
    """Save keywords: metadata drn upscale carries to the output (ICC, EXIF, DPI) on two files."""
    from PIL import ImageCms

    kw = {"quality": 90} if name.endswith(".jpg") else {}
    if name == "rgb03.png":
        kw.update(icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(), dpi=(300, 300))
    if name == "sub/photo1.jpg":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees; read_image turns the pixels upright
        kw.update(exif=exif, dpi=(72, 72))
    return kw


def _write_folder(root: Path) -> dict:
    rng = np.random.default_rng(16)
    sizes = {}
    for name, h, w, mode in GOOD:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        # smooth-ish content (so JPEG is realistic), not pure noise
        base = rng.integers(0, 256, (h // 4 + 2, w // 4 + 2, channels), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(base.squeeze(-1) if channels == 1 else base).resize((w, h), Image.BICUBIC))
        Image.fromarray(arr).save(path, **_extras(name))
        sizes[name] = (w, h) if name == "sub/photo1.jpg" else (h, w)  # upright size
    good_png = (root / GOOD[0][0]).read_bytes()
    (root / BAD[0]).write_bytes(good_png[: len(good_png) // 2])  # a PNG cut in half
    (root / BAD[1]).write_text("this is not a JPEG\n")
    return sizes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam_in")
    return root, _write_folder(root)


@pytest.fixture(scope="module")
def reference(folder, model_files, tmp_path_factory):
    """drn upscale's outputs for the same folder and model."""
    root, _ = folder
    out = tmp_path_factory.mktemp("ref_out")
    rc = main(["upscale", str(root), "-o", str(out), "--model", str(model_files[2]), "-q"])
    assert rc == 1  # the two bad files
    return out


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def _no_temporaries(root: Path):
    stray = [p for p in root.rglob("*") if p.name.startswith(".") or "tmp" in p.name.lower() or "beam-temp" in p.name]
    assert not stray, stray


def _expected_names():
    out = set()
    for name, *_ in GOOD:
        p = Path(name)
        out.add(p.with_name(f"{p.stem}_x2{p.suffix}").as_posix())
    return out


@pytest.mark.slow
def test_pipeline_matches_drn_upscale_with_dead_letters_and_counters(folder, reference, model_files, tmp_path):
    root, sizes = folder
    out = tmp_path / "beam_out"
    stats = B.run(str(root), str(out), model=str(model_files[2]))

    produced = _files(out)
    expected = _expected_names()
    assert set(_files(reference)) == expected  # drn upscale wrote the 20
    assert set(produced) == expected | {B.FAILURES_NAME}
    for name in expected:
        assert produced[name].read_bytes() == (reference / name).read_bytes(), name
    with Image.open(out / "rgb03_x2.png") as im:  # the metadata did travel
        assert im.info.get("icc_profile") and round(im.info["dpi"][0]) == 300
    # and the pixels are the model's (not, say, a copy of the input): shapes x2
    for name, (h, w) in sizes.items():
        p = Path(name)
        with Image.open(out / p.with_name(f"{p.stem}_x2{p.suffix}")) as im:
            assert im.size == (2 * w, 2 * h)

    records = [json.loads(line) for line in (out / B.FAILURES_NAME).read_text().splitlines()]
    assert sorted(r["path"] for r in records) == sorted(str(root / b) for b in BAD)
    assert all(r["stage"] == "decode" and r["reason"] for r in records)
    assert B.read_failures(out) == records

    assert stats["images"] == 20
    assert stats["failures"] == 2
    assert stats["output_pixels"] == sum(4 * h * w for h, w in sizes.values())
    assert stats["output_kilopixels"]["count"] == 20
    assert stats["model_loads"] == 1  # one worker: one load for 20 images
    assert stats["scale"] == 2
    _no_temporaries(out)


@pytest.mark.slow
def test_cli_two_worker_processes_existing_outputs_and_resume(folder, reference, model_files, tmp_path, capsys):
    root, sizes = folder
    small = tmp_path / "in"
    for name in ("rgb00.png", "rgb01.png", "grey0.png", "sub/photo0.jpg", "truncated.png"):
        (small / name).parent.mkdir(parents=True, exist_ok=True)
        (small / name).write_bytes((root / name).read_bytes())
    out = tmp_path / "out"
    workers = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    rc = main(["beam", str(small), str(out), "--model", str(model_files[2]), *workers])
    stdout, stderr = capsys.readouterr()
    assert rc == 1, stderr
    assert "Traceback" not in stderr
    errors = [l for l in stderr.splitlines() if ": error: " in l]
    assert errors == [f"drn beam: error: {small / 'truncated.png'}: " + B.read_failures(out)[0]["reason"]]
    assert "4 image(s) upscaled x2" in stdout and "1 failed" in stdout
    loads = int(stdout.split("model loaded by ")[1].split()[0])
    assert 1 <= loads <= 2  # once per worker process, not per image
    for name in ("rgb00_x2.png", "rgb01_x2.png", "grey0_x2.png", "sub/photo0_x2.jpg"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    _no_temporaries(out)

    # a second run refuses the existing outputs (dead letters), like drn upscale ...
    stamp = {n: p.stat().st_mtime_ns for n, p in _files(out).items() if n != B.FAILURES_NAME}
    rc = main(["beam", str(small), str(out), "--model", str(model_files[2])])
    stdout, stderr = capsys.readouterr()
    assert rc == 1
    reasons = {r["path"]: r["reason"] for r in B.read_failures(out)}
    assert len(reasons) == 5 and all("exists" in reasons[str(small / n)] for n in ("rgb00.png", "sub/photo0.jpg"))
    stages = {r["path"]: r["stage"] for r in B.read_failures(out)}
    assert stages[str(small / "rgb00.png")] == "output" and stages[str(small / "truncated.png")] == "decode"
    assert {n: p.stat().st_mtime_ns for n, p in _files(out).items() if n != B.FAILURES_NAME} == stamp
    # ... and --skip-existing resumes: nothing rewritten, only the bad file fails
    rc = main(["beam", str(small), str(out), "--model", str(model_files[2]), "--skip-existing"])
    stdout, stderr = capsys.readouterr()
    assert rc == 1 and "0 image(s) upscaled" in stdout and "4 skipped" in stdout and "1 failed" in stdout
    assert [r["path"] for r in B.read_failures(out)] == [str(small / "truncated.png")]


def test_same_output_name_goes_to_dead_letters(model_files, tmp_path):
    """A glob over two folders with the same file name: one output, one dead letter."""
    rng = np.random.default_rng(0)
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(tmp_path / d / "same.png")
    out = tmp_path / "out"
    stats = B.run(str(tmp_path / "*" / "same.png"), str(out), model=str(model_files[2]))
    assert stats["images"] == 1 and stats["failures"] == 1
    (record,) = B.read_failures(out)
    assert record["path"] == str(tmp_path / "b" / "same.png") and record["stage"] == "plan"
    assert "also the output of" in record["reason"] and str(tmp_path / "a" / "same.png") in record["reason"]
    assert sorted(_files(out)) == [B.FAILURES_NAME, "same_x2.png"]


def test_layout_names_like_drn_upscale(tmp_path):
    from drn_tf.inference.files import Job, output_path

    out = str(tmp_path / "o")
    folder = B.Layout(out, 3, None, str(tmp_path / "in"))
    src = str(tmp_path / "in" / "a" / "b.tif")
    want = output_path(Job(Path(src), Path("a/b.tif")), scale=3, out=Path(out), out_is_file=False, fmt=None)
    assert folder.destination(src) == str(want) == os.path.join(out, "a", "b_x3.tif")
    assert B.Layout(out, 2, "webp").destination("gs://bucket/x/photo.JPG") == os.path.join(out, "photo_x2.webp")
    assert folder.wanted(src) and not folder.wanted(str(tmp_path / "in" / "notes.txt"))
    assert not folder.wanted(str(tmp_path / "in" / ".hidden" / "x.png"))
    # OUTPUT_DIR inside the input folder: its NAME_x3.* files are outputs, not inputs
    inner = B.Layout(str(tmp_path / "in" / "o"), 3, None, str(tmp_path / "in"))
    assert inner.looks_like_output(str(tmp_path / "in" / "o" / "b_x3.tif"))
    assert not inner.looks_like_output(str(tmp_path / "in" / "o" / "b.tif"))
    assert not inner.looks_like_output(str(tmp_path / "in" / "b_x3.tif"))


def test_saved_model_handler_tiles_like_keras(model_files, tmp_path):
    """The SavedModel's serving_default behind the handler: its radius read from
    the variables equals the Keras model's, and tiled output equals drn upscale's
    Keras output within the one level the uint8 signature may round differently."""
    from drn_tf.export.savedmodel import export_saved_model
    from drn_tf.inference.upscale import upscale
    from drn_tf.models.resolve import model_receptive_radius, resolve_model

    keras_model = resolve_model(str(model_files[2]))
    base = tmp_path / "sm"
    export_saved_model(keras_model, base)
    handler = B.DRNModelHandler(str(base), tile=40)
    upscaler = handler.load_model()
    assert isinstance(upscaler.model, B.SavedModelUpscaler)
    assert upscaler.model.receptive_radius == model_receptive_radius(keras_model)
    assert upscaler.model.scale == 2
    rng = np.random.default_rng(3)
    for shape in ((70, 53, 3), (45, 61), (33, 29, 4)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        (got,) = handler.run_inference([image], upscaler)
        want = upscale(image, model=keras_model, tile=40)
        if image.ndim == 2:
            # grey: the signature clips each RGB channel to uint8 before the
            # average back to grey; Keras averages first (differs where an
            # untrained model's channels leave [0, 1])
            rgb = upscale(np.repeat(image[..., None], 3, axis=-1), model=keras_model, tile=40)
            want = np.floor(rgb.astype(np.float32).mean(axis=-1) + 0.5).astype(np.uint8)
        assert got.inference.shape == want.shape and got.inference.dtype == np.uint8
        assert np.abs(got.inference.astype(int) - want.astype(int)).max() <= 1, shape
        assert got.example is image
    with pytest.raises(B.BeamError, match="not a SavedModel"):
        B.SavedModelUpscaler(str(tmp_path))


def test_runtime_option_runs_the_table_runtime(model_files, tmp_path, monkeypatch):
    """--runtime litert: the handler runs the float32 TFLite runtime of the runtime table, and gives what
    drn_tf.upscale(runtime="litert") gives; a SavedModel runs in TensorFlow only."""
    from drn_tf.export.savedmodel import export_saved_model
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.inference.upscale import upscale
    from drn_tf.models.resolve import resolve_model

    monkeypatch.setenv("DRN_CACHE_DIR", str(tmp_path / "cache"))
    handler = B.DRNModelHandler(str(model_files[2]), tile=40, runtime="litert")
    upscaler = handler.load_model()
    assert isinstance(upscaler.model, LiteRTRuntime) and upscaler.model.name == "litert"
    image = np.random.default_rng(5).integers(0, 256, (70, 53, 3), dtype=np.uint8)
    (got,) = handler.run_inference([image], upscaler)
    np.testing.assert_array_equal(got.inference, upscale(image, model=str(model_files[2]), tile=40, runtime="litert"))
    export_saved_model(resolve_model(str(model_files[2])), tmp_path / "sm")
    with pytest.raises(B.BeamError, match="runs in TensorFlow"):
        B.load_upscaling_model(str(tmp_path / "sm"), runtime="litert")
    with pytest.raises(ValueError, match="runtime must be one of"):
        B.load_upscaling_model(str(model_files[2]), runtime="tpu")


def test_cli_help_and_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["beam", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "DataflowRunner" in text and "--direct_num_workers=2" in text and "_failures.jsonl" in text
    rc = main(["beam", str(tmp_path / "nothing*.png"), str(tmp_path / "o"), "--preset", "drn_s_x2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"drn beam: error: {tmp_path / 'nothing*.png'}: no files match this pattern"
    (tmp_path / "x.png").write_bytes(b"")
    rc = main(["beam", str(tmp_path / "x.png"), str(tmp_path / "o"), "--runner", "DirectRunner"])
    err = capsys.readouterr().err
    assert rc == 2 and "--name=value" in err and "Traceback" not in err
    # bad pipeline options: Beam's reason in one line, before any model loads (a preset that does not exist
    # would fail later, so reaching it would change the message)
    for option, reason in (("--direct_num_workers=abc", "invalid int value: 'abc'"),
                           ("--runner=NoSuchRunner", "Unexpected pipeline runner: NoSuchRunner")):
        rc = main(["beam", str(tmp_path / "x.png"), str(tmp_path / "o"), "--model", str(tmp_path / "none.keras"),
                   option])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("drn beam: error: bad pipeline option: ") and reason in err, err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_share_model_across_processes(folder, reference, model_files, tmp_path, capsys):
    """--share-model (RunInference large_model: one copy behind a cross-process proxy) gives the same files."""
    root, _ = folder
    out = tmp_path / "out"
    rc = main(["beam", str(root / "sub" / "photo*.jpg"), str(out), "--model", str(model_files[2]), "--share-model"])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    assert "3 image(s) upscaled x2" in stdout and "0 failed" in stdout
    for i in range(3):
        name = f"photo{i}_x2.jpg"
        assert (out / name).read_bytes() == (reference / "sub" / name).read_bytes(), name
