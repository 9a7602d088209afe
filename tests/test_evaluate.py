"""The evaluation protocol (drn_tf.inference.evaluation) and ``drn evaluate``."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from drn_tf.cli.main import main
from drn_tf.core import protocol as P  # noqa: E402
from drn_tf.core.imageio import read_image
from drn_tf.core.imresize import bicubic_degrade, bicubic_upscale, modcrop
from drn_tf.core.metrics import psnr_y, ssim_y
from drn_tf.inference import evaluation as ev
from drn_tf.inference import upscale as U  # noqa: E402

# Published bicubic results under the protocol (shared/data/README.md): (PSNR, SSIM)
PUBLISHED = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


@pytest.fixture(scope="module")
def bicubic_results(set5, set14):
    return {s: ev.evaluate_folders([set5, set14], s, method="bicubic") for s in (2, 3, 4)}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_reproduces_published_numbers(bicubic_results, scale):
    for r in bicubic_results[scale]:
        want_p, want_s = PUBLISHED[(r.name, scale)]
        assert len(r.images) == {"Set5": 5, "Set14": 14}[r.name]
        assert abs(r.psnr - want_p) < 0.03, (r.name, scale, r.psnr)
        assert abs(r.ssim - want_s) < 0.002, (r.name, scale, r.ssim)


def test_grey_image_is_evaluated_on_its_single_channel(bicubic_results, set14):
    s = 3
    set14_res = bicubic_results[s][1]
    bridge = next(r for r in set14_res.images if r.name == "bridge.png")
    assert bridge.channels == 1 and all(r.channels == 3 for r in set14_res.images if r is not bridge)
    hr = modcrop(read_image(set14 / "bridge.png"), s)
    assert hr.shape[-1] == 1
    sr = bicubic_upscale(bicubic_degrade(hr, s), s)
    assert bridge.psnr == pytest.approx(psnr_y(sr, hr, s)) and bridge.ssim == pytest.approx(ssim_y(sr, hr, s))
    # treating it as RGB (luma of replicated grey) would move the Set14 mean out of tolerance
    hr3 = np.repeat(hr, 3, axis=-1)
    sr3 = bicubic_upscale(bicubic_degrade(hr3, s), s)
    others = [r.psnr for r in set14_res.images if r is not bridge]
    as_rgb_mean = np.mean(others + [psnr_y(sr3, hr3, s)])
    assert abs(as_rgb_mean - PUBLISHED[("Set14", s)][0]) > 0.03
    assert abs(set14_res.psnr - PUBLISHED[("Set14", s)][0]) < 0.03


def _channel_model(scale=2):
    """Nearest-neighbour x``scale`` with channel gains 0.5, 1, 1.5 (mean gain 1)."""
    model = keras.Sequential([
        keras.Input((None, None, 3)),
        keras.layers.UpSampling2D(scale, interpolation="nearest"),
        keras.layers.Conv2D(3, 1, use_bias=False),
    ])
    model.layers[-1].set_weights([np.diag([0.5, 1.0, 1.5]).astype(np.float32)[None, None]])
    return model


def test_grey_through_a_model_is_replicated_and_averaged(rng):
    model = _channel_model(2)
    lr = rng.integers(0, 170, (9, 13, 1), dtype=np.uint8)
    sr = ev.upscale_model(model, lr)
    assert sr.shape == (18, 26, 1) and sr.dtype == np.uint8
    np.testing.assert_array_equal(sr[..., 0], np.kron(lr[..., 0], np.ones((2, 2), np.uint8)))
    colour = rng.integers(0, 170, (9, 13, 3), dtype=np.uint8)
    sr3 = ev.upscale_model(model, colour)
    np.testing.assert_array_equal(sr3[::2, ::2, 1], colour[..., 1])
    np.testing.assert_array_equal(sr3[::2, ::2, 0], np.floor(colour[..., 0] * 0.5 + 0.5).astype(np.uint8))


def test_grey_is_averaged_before_clipping_the_same_way_everywhere(rng):
    """The protocol's grey rule (core.protocol.model_output): the 3 output channels are averaged, then
    clipped. With channel gains 0.5/1/1.5 a bright grey pixel overflows the third channel; averaging the
    clipped channels would give a darker grey. drn evaluate, drn_tf.upscale and the training validation's
    model_output agree, to the level."""
    from drn_tf.core.protocol import model_input, model_output

    model = _channel_model(2)
    lr = rng.integers(180, 256, (6, 5, 1), dtype=np.uint8)
    want = np.kron(lr[..., 0], np.ones((2, 2), np.uint8))[..., None]  # gains average to 1
    np.testing.assert_array_equal(ev.upscale_model(model, lr), want)
    np.testing.assert_array_equal(U.upscale_array(lr, model), want)
    np.testing.assert_array_equal(U.upscale_array(lr[..., 0], model), want[..., 0])
    y = np.asarray(model.predict_on_batch(model_input(lr)[None]))[0]
    assert y.max() > 1.0  # the third channel does overflow
    np.testing.assert_array_equal(model_output(y, grey=True), want)
    np.testing.assert_allclose(model_output(y, grey=True, dtype=np.float32), want / 255.0, atol=1e-6)
    clipped_first = np.floor(np.clip(y, 0.0, 1.0).mean(axis=-1, keepdims=True) * 255.0 + 0.5)
    assert (clipped_first < want).any()


def test_read_benchmark_raises_or_skips_with_a_warning_and_keeps_grey(tmp_path, set5, set14):
    folder = tmp_path / "bench"
    folder.mkdir()
    shutil.copy(set5 / "bird.png", folder / "a.png")
    Image.open(set14 / "bridge.png").crop((0, 0, 40, 36)).save(folder / "b_grey.png")
    (folder / "c_broken.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((14, 30, 3), np.uint8)).save(folder / "d_tiny.png")  # 14 - 2*2 < 11
    with pytest.raises(P.ImageReadError, match="c_broken.png"):
        P.read_benchmark(folder, 2)
    with pytest.warns(UserWarning) as caught:
        bench = P.read_benchmark(folder, 2, on_error="skip", label="my set")
    assert [p.name for p in bench.paths] == ["a.png", "b_grey.png"]
    assert [h.shape for h in bench.hrs] == [(288, 288, 3), (36, 40, 1)]
    assert [lr.shape for lr in bench.lrs] == [(144, 144, 3), (18, 20, 1)]
    for (lr, hr), path in zip(zip(bench.lrs, bench.hrs), bench.paths):
        want_lr, want_hr = P.load_pair(path, 2)
        np.testing.assert_array_equal(lr, want_lr)
        np.testing.assert_array_equal(hr, want_hr)
    assert len(bench.skipped) == 2 and "c_broken.png" in bench.skipped[0] and "too small" in bench.skipped[1]
    assert [str(w.message) for w in caught] == [f"my set: skipping {r}" for r in bench.skipped]
    assert [p.name for p in P.read_benchmark(folder, 2, limit=1).paths] == ["a.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found"):
        P.read_benchmark(tmp_path / "empty", 2)
    # drn evaluate: the same skips, and its progress counts every file
    calls = []
    with pytest.warns(UserWarning):
        res = ev.evaluate_folder(folder, 2, on_error="skip", progress=lambda *a: calls.append(a[1:3]))
    assert [r.name for r in res.images] == ["a.png", "b_grey.png"] and res.skipped == bench.skipped
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_self_ensemble_undoes_each_transform(rng):
    # nearest upsampling commutes with flips/rotations: the ensemble equals the plain output
    # (a wrongly inverted transform would not, on this non-square image)
    model = _channel_model(3)
    lr = rng.integers(0, 150, (7, 11, 3), dtype=np.uint8)
    x = lr.astype(np.float32) / 255.0
    np.testing.assert_allclose(U.super_resolve(model, x, self_ensemble=True), U.super_resolve(model, x), atol=1e-6)
    # a model that is not equivariant: ensemble = mean of the 8 inverted outputs
    conv = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    outs = []
    for k in range(8):
        t = np.rot90(x[:, ::-1] if k >= 4 else x, k % 4)
        y = np.asarray(conv(t[None]))[0]
        y = np.rot90(y, -(k % 4))
        outs.append(y[:, ::-1] if k >= 4 else y)
    got = U.super_resolve(conv, x, self_ensemble=True)
    np.testing.assert_allclose(got, np.mean(outs, axis=0), atol=1e-5)
    assert not np.allclose(got, U.super_resolve(conv, x), atol=1e-3)


def test_cli_bicubic_x4_table_json_and_progress(set5, set14, tmp_path, capsys, bicubic_results):
    out_json = tmp_path / "res" / "x4.json"
    rc = main(["evaluate", "--data", str(set5), str(set14), "--scale", "4", "--method", "bicubic",
               "--json", str(out_json), "--save-images", str(tmp_path / "sr")])
    cap = capsys.readouterr()
    assert rc == 0
    assert "| set | images | PSNR (dB) | SSIM |" in cap.out
    rows = {}
    for line in cap.out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] in ("Set5", "Set14"):
            rows[cells[0]] = (int(cells[1]), float(cells[2]), float(cells[3]))
    assert rows["Set5"][0] == 5 and rows["Set14"][0] == 14
    for name, (_, p, s) in rows.items():  # printed with 2 / 4 decimals
        assert abs(p - PUBLISHED[(name, 4)][0]) < 0.03 + 0.005 and abs(s - PUBLISHED[(name, 4)][1]) < 0.002 + 5e-5
    assert "Set14: [" in cap.err and "Set14" not in cap.out.split("|", 1)[0]  # progress on stderr
    data = json.loads(out_json.read_text())
    assert data["scale"] == 4 and data["method"] == "bicubic"
    by_set = {s["set"]: s for s in data["sets"]}
    for name in ("Set5", "Set14"):
        want_p, want_s = PUBLISHED[(name, 4)]
        assert abs(by_set[name]["psnr"] - want_p) < 0.03 and abs(by_set[name]["ssim"] - want_s) < 0.002
        lib = next(r for r in bicubic_results[4] if r.name == name)
        assert by_set[name]["psnr"] == pytest.approx(lib.psnr)
        assert len(by_set[name]["per_image"]) == by_set[name]["images"]
    bridge = next(i for i in by_set["Set14"]["per_image"] if i["name"] == "bridge.png")
    assert bridge["channels"] == 1
    saved = Image.open(tmp_path / "sr" / "Set14" / "bridge.png")
    assert saved.mode == "L" and saved.size == (512, 512)
    assert len(list((tmp_path / "sr" / "Set5").glob("*.png"))) == 5
    assert np.asarray(Image.open(tmp_path / "sr" / "Set5" / "bird.png")).shape == (288, 288, 3)


def _tiny_drn(scale):
    from drn_tf.models.drn import DRN

    return DRN(scale=scale, channels=8, growth=4, num_blocks=1, num_groups=1)


def test_cli_model_scale_mismatch_and_default_preset(tmp_path, set5, capsys, monkeypatch):
    import drn_tf.models.drn as model_mod

    path = tmp_path / "tiny_x3.keras"
    _tiny_drn(3).save(path)
    assert main(["evaluate", "--data", str(set5), "--scale", "2", "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert "x3" in err and "--scale 2" in err and "Traceback" not in err
    # default model drn_x{S} without bundled weights: refused, not evaluated with random weights
    monkeypatch.setattr(model_mod, "ASSETS_DIR", tmp_path / "no_assets")
    assert main(["evaluate", "--data", str(set5), "--scale", "2"]) == 2
    err = capsys.readouterr().err
    assert "no trained weights are bundled for preset drn_x2" in err
    assert main(["evaluate", "--data", str(set5), "--preset", "drn_x3", "--scale", "2"]) == 2
    assert "x3" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(set5), "--method", "bicubic"]) == 2
    assert "--scale is required" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--scale", "2", "--method", "bicubic"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_model_and_bundled_preset(tmp_path, set5, capsys, monkeypatch):
    import drn_tf.models.drn as model_mod

    assets = tmp_path / "assets"
    assets.mkdir()
    tiny = _tiny_drn(2)
    tiny.save(assets / "drn_x2.keras")
    monkeypatch.setattr(model_mod, "ASSETS_DIR", assets)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(set5 / "bird.png", one / "bird.png")
    out = tmp_path / "p.json"
    assert main(["evaluate", "--data", str(one), "--scale", "2", "--json", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert res["model"] == "preset drn_x2" and res["sets"][0]["images"] == 1
    # the number is the protocol applied to this model's output
    lr, hr = P.load_pair(one / "bird.png", 2)
    sr = ev.upscale_model(tiny, lr)
    assert res["sets"][0]["psnr"] == pytest.approx(psnr_y(sr, hr, 2), abs=1e-3)
    assert res["sets"][0]["ssim"] == pytest.approx(ssim_y(sr, hr, 2), abs=1e-5)
    assert "| one | 1 |" in capsys.readouterr().out


def test_unreadable_benchmark_file_refused_or_skipped(tmp_path, set5, capsys):
    folder = tmp_path / "bench"
    folder.mkdir()
    for name in ("bird.png", "head.png"):
        shutil.copy(set5 / name, folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["evaluate", "--data", str(folder), "--scale", "2", "--method", "bicubic"]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "--skip-unreadable" in err and "Traceback" not in err
    assert main(["evaluate", "--data", str(folder), "--scale", "2", "--method", "bicubic", "--skip-unreadable",
                 "--json", "-", "--quiet"]) == 0
    cap = capsys.readouterr()
    assert "broken.png" in cap.err
    data = json.loads(cap.out)
    assert data["sets"][0]["images"] == 2 and "broken.png" in data["sets"][0]["skipped"][0]
    with pytest.raises(Exception, match="broken.png"):
        ev.evaluate_folder(folder, 2)


def test_cli_output_paths_checked_before_the_evaluation(tmp_path, set5, capsys, monkeypatch):
    """--json / --save-images that cannot be written: one line naming the option, before any work."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")

    def no_evaluation(*a, **k):
        raise AssertionError("evaluated although the results could not be saved")

    monkeypatch.setattr(ev, "evaluate_folders", no_evaluation)
    base = ["evaluate", "--data", str(set5), "--scale", "2", "--method", "bicubic", "--quiet"]
    assert main([*base, "--json", str(blocker / "res.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn evaluate: error: --json: ") and "file.txt" in err and "Traceback" not in err
    assert main([*base, "--json", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*base, "--save-images", str(blocker / "sr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn evaluate: error: --save-images ") and "Traceback" not in err


def test_cli_json_under_a_regular_file_is_one_clear_line_before_any_work(tmp_path, set5, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setattr(ev, "evaluate_folders", lambda *a, **k: pytest.fail("evaluated before the --json check"))
    base = ["evaluate", "--data", str(set5), "--scale", "2", "--method", "bicubic", "--quiet"]
    for out in (afile / "res.json", afile / "sub" / "res.json"):
        assert main([*base, "--json", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"drn evaluate: error: --json: cannot write {out}: {afile} is a file, not a folder"]
    assert afile.read_text() == "x"
    fresh = tmp_path / "new" / "res.json"  # a folder to make: made when the results are written, not before
    monkeypatch.setattr(ev, "evaluate_folders", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError("no data")))
    assert main([*base, "--json", str(fresh)]) == 2 and not fresh.parent.exists()


def test_cli_save_images_write_error_names_the_option(tmp_path, set5, capsys, monkeypatch):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(set5 / "bird.png", one / "bird.png")

    def disk_full(self, fp, format=None, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    out = tmp_path / "sr"
    assert main(["evaluate", "--data", str(one), "--scale", "2", "--method", "bicubic", "--quiet",
                 "--save-images", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--save-images" in err and "No space left" in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if p.is_file()]  # no partial image left behind


def test_cli_runtime_measures_the_export_by_the_protocol(tmp_path, set5, capsys):
    """``--runtime litert`` evaluates the model's float32 TFLite export (the same PSNR within float rounding,
    labelled with the runtime); an unknown combination is one line, exit 2."""
    path = tmp_path / "m.keras"
    _tiny_drn(2).save(path)
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(set5 / "bird.png", one / "bird.png")
    results = {}
    for runtime in ("keras", "litert"):
        out = tmp_path / f"{runtime}.json"
        assert main(["evaluate", "--data", str(one), "--model", str(path), "--runtime", runtime, "--json", str(out),
                     "--quiet"]) == 0
        results[runtime] = json.loads(out.read_text())
    assert results["keras"]["model"] == str(path) and results["litert"]["model"] == f"{path}, litert"
    assert results["litert"]["sets"][0]["psnr"] == pytest.approx(results["keras"]["sets"][0]["psnr"], abs=0.01)
    capsys.readouterr()
    assert main(["evaluate", "--data", str(one), "--model", str(path), "--runtime", "litert", "--precision",
                 "bf16", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bf16" in err[0]
