"""LR degradations (drn_tf.core.degrade): JPEG/noise for ``drn evaluate --degrade`` and the training
config's ``data.degrade``: deterministic, resume-exact, the same in every input pipeline, and applied
to bicubic as to the model."""

from __future__ import annotations

import numpy as np
import pytest

from drn_tf.core.degrade import LRDegradation, TrainDegradation, jpeg, parse_degradations
from drn_tf.core.tiling import dihedral
from drn_tf.data.patches import PatchSampler

SIZES = [(40, 52), (33, 64), (60, 36)]


def pairs(scale, rng):
    # smooth images with texture: JPEG changes them visibly, unlike flat ones
    lrs, hrs = [], []
    for h, w in SIZES:
        y, x = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin(x / 3.0) * np.cos(y / 5.0)
        lr = np.clip(base[..., None] + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        lrs.append(lr)
        hrs.append(rng.integers(0, 256, (h * scale, w * scale, 3), dtype=np.uint8))
    return lrs, hrs


# ------------------------------------------------------------------ parsing and the operations


def test_parse_degradations_grammar():
    got = parse_degradations("clean, jpeg:95,85 ,jpeg:85, noise:5,2.5")
    assert [d.label for d in got] == ["clean", "jpeg:95", "jpeg:85", "noise:5", "noise:2.5"]
    assert parse_degradations("JPEG:50") == [LRDegradation("jpeg", 50.0)]


@pytest.mark.parametrize("text, needle", [
    ("jpeg:0", "JPEG quality"), ("jpeg:75.5", "JPEG quality"), ("jpeg:", "JPEG quality"), ("blur:2", "expected"),
    ("75", "expected"), ("clean:3", "no value"), ("noise:0", "sigma"), ("", "no degradation"), ("clean,80", "expected"),
])
def test_parse_degradations_refuses_with_the_item_named(text, needle):
    with pytest.raises(ValueError, match=needle):
        parse_degradations(text)


def test_jpeg_keeps_shape_and_channels_and_degrades_more_at_low_quality(rng):
    lr = pairs(2, rng)[0][0]
    grey = lr[..., :1]
    for img in (lr, grey):
        out = jpeg(img, 50)
        assert out.shape == img.shape and out.dtype == np.uint8
    err = {q: np.abs(jpeg(lr, q).astype(int) - lr).mean() for q in (95, 50, 10)}
    assert 0 < err[95] < err[50] < err[10]
    np.testing.assert_array_equal(jpeg(lr, 50), jpeg(lr, 50))


def test_noise_is_seeded_by_the_key(rng):
    lr = pairs(2, rng)[0][0]
    op = LRDegradation("noise", 5.0)
    np.testing.assert_array_equal(op(lr, key="a.png"), op(lr, key="a.png"))
    assert (op(lr, key="a.png") != op(lr, key="b.png")).any()
    assert LRDegradation("clean")(lr) is lr


# ------------------------------------------------------------------ training config


def test_train_degradation_from_config():
    d = TrainDegradation.from_config({"prob": 0.85, "jpeg_quality": [60, 90]})
    assert d.enabled and d.pool == 3 and d.jpeg_quality == (60, 90)
    assert not TrainDegradation.from_config(None).enabled
    assert TrainDegradation.from_config(d.to_config()) == d


@pytest.mark.parametrize("value, needle", [
    ({"prob": 1.5}, "prob"), ({"pool": 0}, "pool"), ({"pool": 2.5}, "integer"), ({"jpeg_quality": [90, 60]}, "low <= high"),
    ({"jpeg_quality": [60.5, 90]}, "integers"), ({"jpeg": 3}, "unknown key"), ("jpeg:75", "mapping"),
])
def test_train_degradation_refuses_bad_values(value, needle):
    with pytest.raises(ValueError, match=needle):
        TrainDegradation.from_config(value)


def test_copy_recipe_is_a_pure_function_within_the_ranges():
    d = TrainDegradation(prob=1.0, pool=4, jpeg_quality=(55, 95), noise_prob=0.5, noise_sigma=(1.0, 8.0))
    recipes = [d.copy_recipe(7, i, k) for i in range(30) for k in range(4)]
    assert recipes == [d.copy_recipe(7, i, k) for i in range(30) for k in range(4)]
    assert all(55 <= q <= 95 and (s == 0 or 1 <= s <= 8) for s, q in recipes)
    assert len({q for _, q in recipes}) > 10  # qualities vary across copies
    assert 0.3 < np.mean([s > 0 for s, _ in recipes]) < 0.7
    assert recipes != [d.copy_recipe(8, i, k) for i in range(30) for k in range(4)]  # the seed matters


def test_config_section_resolves_and_is_checked():
    from drn_tf.train.config import ConfigError, load_config, resolve_config

    cfg = resolve_config(load_config(sets=["data.degrade={prob: 0.5}", "data.val_degrade=jpeg:75"]))
    assert cfg["data"]["degrade"]["prob"] == 0.5 and cfg["data"]["degrade"]["jpeg_quality"] == [55, 95]
    assert cfg["data"]["val_degrade"] == "jpeg:75"
    assert resolve_config(load_config())["data"]["degrade"]["prob"] == 0.0
    with pytest.raises(ConfigError, match="data.degrade.prob"):
        resolve_config(load_config(sets=["data.degrade={prob: 2}"]))
    with pytest.raises(ConfigError, match="one degradation"):
        resolve_config(load_config(sets=["data.val_degrade=jpeg:75,50"]))


# ------------------------------------------------------------------ the patch stream


def test_degraded_stream_keeps_the_clean_positions_and_cuts_the_drawn_copy(rng):
    lrs, hrs = pairs(2, rng)
    d = TrainDegradation(prob=0.6, pool=3)
    clean = PatchSampler(lrs, hrs, 2, patch_size=16, batch_size=64, seed=5)
    deg = PatchSampler(lrs, hrs, 2, patch_size=16, batch_size=64, seed=5, degrade=d)
    a, b = clean.specs(4, epoch=2), deg.specs(4, epoch=2)
    assert [(s.index, s.top, s.left, s.transform) for s in a] == [(s.index, s.top, s.left, s.transform) for s in b]
    versions = np.array([s.version for s in b])
    assert set(versions) <= {0, 1, 2, 3} and 0.3 < np.mean(versions > 0) < 0.9
    lr_b, hr_b = deg.batch_uint8(4, epoch=2)
    np.testing.assert_array_equal(hr_b, clean.batch_uint8(4, epoch=2)[1])  # HR never degraded
    for k, s in enumerate(b):
        src = lrs[s.index] if s.version == 0 else d.copy_of(lrs[s.index], 5, s.index, s.version - 1)
        np.testing.assert_array_equal(lr_b[k], dihedral(src[s.top:s.top + 16, s.left:s.left + 16], s.transform))
        assert (s.version == 0) == np.array_equal(lr_b[k], clean.batch_uint8(4, epoch=2)[0][k])


def test_degraded_stream_is_resume_exact(rng):
    lrs, hrs = pairs(2, rng)
    d = TrainDegradation(prob=0.85, pool=2, noise_prob=0.5)
    make = lambda: PatchSampler(lrs, hrs, 2, patch_size=16, batch_size=8, steps_per_epoch=3, seed=1, degrade=d)
    first = make().stream(0)
    run = [next(first) for _ in range(7)]
    resumed = make().stream(5)  # a new process resuming at global step 5
    for want in run[5:]:
        got = next(resumed)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_tf_data_pipeline_has_the_degraded_batches(rng):
    pytest.importorskip("tensorflow")
    from drn_tf.data.tfdata import make_train_dataset

    lrs, hrs = pairs(2, rng)
    d = TrainDegradation(prob=0.85)
    ds, sampler = make_train_dataset(None, 2, patch_size=16, batch_size=8, steps_per_epoch=3, seed=2,
                                     pairs=(lrs, hrs), degrade=d, return_sampler=True, start_step=2)
    for g, (lr, hr) in zip(range(2, 6), ds):
        want_lr, want_hr = sampler.batch(g % 3, epoch=g // 3)
        np.testing.assert_array_equal(lr.numpy(), want_lr)
        np.testing.assert_array_equal(hr.numpy(), want_hr)
    assert sampler.degrade == d


def test_device_sampler_cuts_the_drawn_copy(rng):
    pytest.importorskip("jax")
    from drn_tf.data.device import DeviceSampler

    lrs, hrs = pairs(2, rng)
    d = TrainDegradation(prob=0.7, pool=2)
    ds = DeviceSampler(lrs, hrs, 2, patch_size=16, batch_size=48, seed=3, degrade=d)
    lr = np.rint(np.asarray(ds.batch(9)[0]) * 255).astype(np.uint8)
    specs = ds.specs(9)
    assert specs.shape == (48, 5) and 0.3 < np.mean(specs[:, 4] > 0) < 0.95
    for k, (i, top, left, t, v) in enumerate(specs):
        src = lrs[i] if v == 0 else d.copy_of(lrs[i], 3, i, v - 1)
        np.testing.assert_array_equal(lr[k], dihedral(src[top:top + 16, left:left + 16], t))
    clean = DeviceSampler(lrs, hrs, 2, patch_size=16, batch_size=48, seed=3)
    np.testing.assert_array_equal(clean.specs(9), specs[:, :4])  # same positions as a clean run


# ------------------------------------------------------------------ evaluation


def test_degrade_applies_to_bicubic_as_to_the_model(set5):
    from drn_tf.inference.evaluation import evaluate_degraded, evaluate_folder

    ops = parse_degradations("clean,jpeg:30")
    rows = evaluate_degraded([set5], 2, None, ops)
    assert [r.degradation for r in rows] == ["clean", "jpeg:30"] and rows[0].model is None
    clean = evaluate_folder(set5, 2, method="bicubic")
    assert rows[0].bicubic[0].psnr == pytest.approx(clean.psnr)
    assert rows[1].bicubic[0].psnr < clean.psnr - 1.0  # the bicubic baseline saw the JPEG too

    seen = []

    def record(lr, key=""):
        seen.append(key)
        return ops[1](lr, key)

    evaluate_folder(set5, 2, method="bicubic", degrade=record)
    assert sorted(seen) == sorted(p.name for p in set5.iterdir() if p.suffix == ".png")


def test_cli_degrade_table_and_json(set5, model_files, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "drn_tf.cli", "evaluate", "--data", str(set5), "--model", str(model_files[2]),
           "--degrade", "jpeg:90,40", "--quiet", "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "| Set5 | jpeg:90 |" in r.stdout and "| Set5 | jpeg:40 |" in r.stdout and "gain (dB)" in r.stdout
    payload = json.loads(out.read_text())
    rows = payload["degradations"]
    assert [d["input"] for d in rows] == ["jpeg:90", "jpeg:40"]
    for d in rows:
        assert d["gain_db"]["Set5"] == pytest.approx(d["sets"][0]["psnr"] - d["bicubic"][0]["psnr"])
    assert rows[1]["bicubic"][0]["psnr"] < rows[0]["bicubic"][0]["psnr"]
    bad = subprocess.run([c if c != "jpeg:90,40" else "jpeg:200" for c in cmd], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--degrade" in bad.stderr and "JPEG quality" in bad.stderr


# ------------------------------------------------------------------ which model an input calls for


def test_jpeg_quality_is_read_from_the_header(tmp_path, rng):
    from PIL import Image

    from drn_tf.core.degrade import estimate_jpeg_quality

    im = Image.fromarray(pairs(2, rng)[0][0])
    for q in (20, 50, 75, 90, 95):
        im.save(tmp_path / f"q{q}.jpg", quality=q)
        assert estimate_jpeg_quality(tmp_path / f"q{q}.jpg") == q
    im.save(tmp_path / "a.png")
    assert estimate_jpeg_quality(tmp_path / "a.png") is None
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert estimate_jpeg_quality(tmp_path / "bad.jpg") is None


def test_input_kind_auto_and_overrides(tmp_path, rng):
    from PIL import Image

    from drn_tf.core.degrade import input_kind

    im = Image.fromarray(pairs(2, rng)[0][0])
    im.save(tmp_path / "a.jpg", quality=70)
    im.save(tmp_path / "a.png")
    assert input_kind(tmp_path / "a.jpg").kind == "photo" and input_kind(tmp_path / "a.jpg").jpeg_quality == 70
    assert "quality ~70" in input_kind(tmp_path / "a.jpg").reason
    assert input_kind(tmp_path / "a.png").kind == "clean"
    assert input_kind(tmp_path / "a.png", "photo").kind == "photo"  # a PNG that was once a JPEG
    assert input_kind(tmp_path / "a.jpg", "clean").kind == "clean"
    with pytest.raises(ValueError, match="kind"):
        input_kind(tmp_path / "a.jpg", "jpeg")


def test_photo_presets_are_variants_and_resolve_falls_back(monkeypatch):
    from drn_tf.models import drn
    from drn_tf.models.presets import get_preset, variant
    from drn_tf.models.resolve import resolve

    for name in ("drn_x2", "drn_s_x4"):
        photo = variant(name, "photo")
        assert photo == f"{name}_photo" and variant(photo, "clean") == name
        assert get_preset(photo)["config"] == get_preset(name)["config"] and get_preset(photo)["kind"] == "photo"
    real = drn.bundled_model_path
    monkeypatch.setattr(drn, "bundled_model_path", lambda n: None if n.endswith("_photo") else real(n))
    r = resolve(preset="drn_s_x2", kind="photo")
    assert r.name == "drn_s_x2" and "no photo model" in r.note and "drn_s_x2_photo" in r.note
    assert resolve(preset="drn_s_x2", kind="clean").note is None


def test_upscale_picks_the_photo_model_for_jpeg_inputs_and_says_so(fresh_drn_s, tmp_path, monkeypatch, capsys):
    """drn upscale --kind auto: a JPEG goes through the photo variant, a PNG through the clean preset; --kind
    overrides. A fresh model stands in for the photo weights, so which model ran shows in the pixels."""
    from PIL import Image

    from drn_tf.cli.main import main
    from drn_tf.inference.upscale import upscale_array
    from drn_tf.models import drn
    from drn_tf.models.drn import load_model

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "drn_s_x2.keras").symlink_to(drn.bundled_model_path("drn_s_x2"))
    photo = fresh_drn_s(2)
    photo.save(assets / "drn_s_x2_photo.keras")
    monkeypatch.setattr(drn, "ASSETS_DIR", assets)
    rng = np.random.default_rng(3)
    image = pairs(2, rng)[0][0][:32, :40]
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(image).save(inputs / "a.jpg", quality=70)
    Image.fromarray(image).save(inputs / "b.png")
    jpeg_pixels = np.asarray(Image.open(inputs / "a.jpg"))

    def run(*extra):
        out = tmp_path / f"out{len(extra)}"
        rc = main(["upscale", str(inputs), "-o", str(out), "--preset", "drn_s_x2", "--format", "png",
                   "--runtime", "keras", *extra])
        assert rc == 0
        return {n: np.asarray(Image.open(out / f"{n}_x2.png")) for n in ("a", "b")}

    clean = load_model(drn.bundled_model_path("drn_s_x2"))
    got = run()
    np.testing.assert_array_equal(got["a"], upscale_array(jpeg_pixels, load_model(assets / "drn_s_x2_photo.keras")))
    np.testing.assert_array_equal(got["b"], upscale_array(image, clean))
    said = capsys.readouterr()
    assert "1 JPEG input(s) (quality ~70): the photo model" in said.out + said.err
    got = run("--kind", "clean")
    np.testing.assert_array_equal(got["a"], upscale_array(jpeg_pixels, clean))


def test_api_kind_follows_the_file_and_is_explicit_for_arrays(fresh_drn_s, tmp_path, monkeypatch):
    from PIL import Image

    import drn_tf
    from drn_tf.models import drn

    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "drn_s_x2.keras").symlink_to(drn.bundled_model_path("drn_s_x2"))
    fresh_drn_s(2).save(assets / "drn_s_x2_photo.keras")
    monkeypatch.setattr(drn, "ASSETS_DIR", assets)
    image = pairs(2, np.random.default_rng(4))[0][0][:24, :24]
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=60)
    pixels = np.asarray(Image.open(tmp_path / "a.jpg"))
    from_file = drn_tf.upscale(tmp_path / "a.jpg", preset="drn_s_x2")
    np.testing.assert_array_equal(from_file, drn_tf.upscale(pixels, preset="drn_s_x2", kind="photo"))
    assert not np.array_equal(from_file, drn_tf.upscale(pixels, preset="drn_s_x2"))  # arrays: clean by default
    with pytest.raises(ValueError, match="kind"):
        drn_tf.upscale(pixels, kind="jpeg")


def test_beam_batch_kind(capsys):
    from drn_tf.cli.commands.beam import _batch_kind

    assert _batch_kind("auto", ["gs://b/a.JPG", "/x/b.jpeg"]) == "photo"
    assert _batch_kind("auto", ["a.png", "b.webp"]) == "clean"
    assert _batch_kind("photo", ["a.png"]) == "photo" and _batch_kind("clean", ["a.jpg"]) == "clean"
    assert capsys.readouterr().err == ""
    assert _batch_kind("auto", ["a.jpg", "b.png"]) == "clean"
    assert "1 of 2 inputs are JPEGs" in capsys.readouterr().err


def test_serve_answers_jpeg_bytes_with_the_photo_variant(tmp_path):
    pytest.importorskip("kserve")
    import io

    from PIL import Image

    from drn_tf.serve.model import DrnModel

    clean, photo = object(), object()
    m = DrnModel("drn_x2", clean, None, runtime="keras", source="drn_x2", photo=photo)
    image = Image.fromarray(pairs(2, np.random.default_rng(5))[0][0])
    jpg, png = io.BytesIO(), io.BytesIO()
    image.save(jpg, format="JPEG", quality=80)
    image.save(png, format="PNG")
    assert m.upscaler_for(jpg.getvalue()) is photo and m.upscaler_for(png.getvalue()) is clean
    assert DrnModel("x", clean, None, runtime="keras", source="x").upscaler_for(jpg.getvalue()) is clean


def test_auto_keeps_near_lossless_jpegs_on_the_clean_model(tmp_path, rng):
    from PIL import Image

    from drn_tf.core.degrade import PHOTO_MAX_QUALITY, input_kind

    im = Image.fromarray(pairs(2, rng)[0][0])
    im.save(tmp_path / "hi.jpg", quality=PHOTO_MAX_QUALITY + 5)
    im.save(tmp_path / "edge.jpg", quality=PHOTO_MAX_QUALITY)
    assert input_kind(tmp_path / "hi.jpg").kind == "clean" and input_kind(tmp_path / "edge.jpg").kind == "photo"
    assert input_kind(tmp_path / "hi.jpg", "photo").kind == "photo"


def test_a_missing_photo_variant_falls_back_to_a_photo_model_of_the_same_scale(monkeypatch):
    from drn_tf.models import drn
    from drn_tf.models.resolve import preset_for_kind

    have = {"drn_x2", "drn_s_x2", "drn_s_x2_photo", "drn_x3"}
    monkeypatch.setattr(drn, "bundled_model_path", lambda n: f"/{n}.keras" if n in have else None)
    assert preset_for_kind("drn_x2", "photo") == ("drn_s_x2_photo",
                                                  "no photo model is bundled for drn_x2_photo: using drn_s_x2_photo")
    assert preset_for_kind("drn_s_x2", "photo") == ("drn_s_x2_photo", None)
    assert preset_for_kind("drn_x3", "photo")[0] == "drn_x3"  # none of x3: the clean preset
    assert preset_for_kind("drn_s_x2_photo", "clean") == ("drn_s_x2", None)
