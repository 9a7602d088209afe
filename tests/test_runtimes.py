"""drn_tf.inference.runtimes: the LiteRT runtimes of ``drn upscale --runtime`` / ``drn_tf.upscale(runtime=...)``.

TFLite files go to a per-test cache folder (``cache_dir`` or ``DRN_CACHE_DIR``),
never to the user's cache.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from drn_tf.bench import export_report as ER  # noqa: E402
from drn_tf.core.metrics import psnr_y
from drn_tf.export import int8 as EI  # noqa: E402
from drn_tf.export import tflite as E
from drn_tf.inference import runtimes as R
from drn_tf.inference.upscale import upscale
from drn_tf.models.drn import DRN
from drn_tf.models.resolve import resolve_model

# the int8 promise, held by test_int8_runtime_tiling_and_quality (bundled drn_s_x2, the preset
# with the least margin: measured 0.094 dB on Set5 x2, 0.060 on Set14, tools/int8_table.py; min-max
# calibration of the Keras graph was 0.20+).
INT8_LOSS_DB = 0.10


def test_runtime_names_and_auto_rule():
    assert R.default_runtime(["avx2", "fma", "avx512f", "avx512_vnni"]) == "keras"
    assert R.default_runtime(["avx2", "fma"]) == "litert"
    from drn_tf.core import utils as utils

    for flags, want in ((["avx2", "avx512f"], "keras"), (["avx2", "fma"], "litert")):  # auto reads this CPU's flags
        original = utils.cpu_flags
        utils.cpu_flags = lambda flags=flags: flags
        try:
            assert R.resolve_runtime("auto") == R.resolve_runtime(None) == want
        finally:
            utils.cpu_flags = original
    assert R.resolve_runtime("litert-int8") == "litert-int8"
    with pytest.raises(ValueError, match="runtime must be one of"):
        R.resolve_runtime("tflite")


def test_tflite_cache_hit_and_rebuild(fresh_drn_s, tmp_path, monkeypatch):
    """The .tflite is converted once per weights: a hit never reconverts, changed weights rebuild."""
    model_path = tmp_path / "m.keras"
    fresh_drn_s(2).save(model_path)
    calls = []
    convert = E.convert_tflite

    def counting(model, quantize, **kw):
        calls.append(quantize)
        return convert(model, quantize, **kw)

    monkeypatch.setattr(E, "convert_tflite", counting)
    cache = tmp_path / "cache"
    first = R.runtime_model(resolve_model(str(model_path)), "litert", cache_dir=cache)
    assert calls == ["float32"] and first.path.parent == cache and first.path.is_file()

    def fail(*a, **kw):
        raise AssertionError("converted again on a cache hit")

    monkeypatch.setattr(E, "convert_tflite", fail)
    R._LOADED.clear()  # a new process: only the file cache is left
    again = R.runtime_model(resolve_model(str(model_path)), "litert", cache_dir=cache)
    assert again.path == first.path

    changed = fresh_drn_s(2)  # new random weights, same file name
    changed.save(model_path)
    os.utime(model_path, ns=(1, 1))  # a different mtime, so resolve_model reloads the file
    monkeypatch.setattr(E, "convert_tflite", counting)
    rebuilt = R.runtime_model(resolve_model(str(model_path)), "litert", cache_dir=cache)
    assert calls == ["float32", "float32"] and rebuilt.path != first.path
    files = sorted(p.name for p in cache.iterdir() if not p.name.endswith(".tflite.lock"))
    assert files == sorted([first.path.name, rebuilt.path.name])  # no temporary files left


def test_concurrent_misses_convert_once(fresh_drn_s, tmp_path, monkeypatch):
    """Two runs missing the cache at once: the second waits for the first's file instead of converting again."""
    import threading
    import time

    model = fresh_drn_s(2)
    calls = []
    convert = E.convert_tflite

    def slow(model, quantize, **kw):
        calls.append(quantize)
        time.sleep(1.0)
        return convert(model, quantize, **kw)

    monkeypatch.setattr(E, "convert_tflite", slow)
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(R.cached_tflite(model, "float32", cache_dir=tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["float32"] and len(set(paths)) == 1 and paths[0].is_file()


def test_int8_cache_key_follows_the_calibration_images(fresh_drn_s, tmp_path, monkeypatch):
    from PIL import Image

    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(train / "a.png")
    monkeypatch.setenv("DRN_DATA", str(tmp_path / "data"))
    model = fresh_drn_s(2)
    key = R.tflite_cache_key(model, "int8")
    assert R.tflite_cache_key(model, "int8") == key and R.tflite_cache_key(model, "float32") != key
    Image.new("RGB", (64, 64), (200, 20, 30)).save(train / "b.png")  # a new calibration image
    assert R.tflite_cache_key(model, "int8") != key


def test_unwritable_cache_still_runs(fresh_drn_s, tmp_path, rng):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")  # the cache folder cannot be created under a file
    model = fresh_drn_s(2)
    with pytest.warns(UserWarning, match="cache .* not used"):
        lite = R.runtime_model(model, "litert", cache_dir=blocker / "cache")
    assert lite.path.is_file() and not (blocker / "cache").exists()
    R.remove_scratch()  # registered with atexit: the scratch copy goes at exit
    assert not lite.path.exists()


def test_litert_runtime_matches_keras(fresh_drn_s, tmp_path, rng):
    """float32 LiteRT through drn_tf.upscale: the Keras output within float rounding, tiled or not."""
    model = fresh_drn_s(2)
    image = rng.integers(0, 256, size=(41, 58, 3), dtype=np.uint8)
    keras_out = upscale(image, model=model, tile=None)
    lite = R.runtime_model(model, "litert", cache_dir=tmp_path)
    tiled = upscale(image, model=lite, tile=30)  # 2 x 3 tiles of 30x30 with overlap 11 (drn_s radius)
    assert tiled.shape == keras_out.shape
    assert np.abs(tiled.astype(int) - keras_out).max() <= 1


def test_cli_runtime(fresh_drn_s, tmp_path, monkeypatch, rng):
    from PIL import Image

    from drn_tf.cli.main import main

    monkeypatch.setenv("DRN_CACHE_DIR", str(tmp_path / "cache"))
    model_path = tmp_path / "m.keras"
    model = fresh_drn_s(2)
    model.save(model_path)
    src = tmp_path / "in.png"
    image = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(image).save(src)
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "--model", str(model_path), "--runtime", "litert", "-q", "-o", str(out)]) == 0
    assert len(list((tmp_path / "cache" / "tflite").glob("*-float32-*.tflite"))) == 1
    want = upscale(image, model=model)
    assert np.abs(np.asarray(Image.open(out)).astype(int) - want).max() <= 1
    with pytest.raises(SystemExit) as exc:  # argparse: one usage line, exit 2
        main(["upscale", str(src), "--model", str(model_path), "--runtime", "tpu", "-o", str(out)])
    assert exc.value.code == 2


@pytest.mark.slow
def test_int8_runtime_tiling_and_quality(data_dir, tmp_path):
    """``litert-int8``: tiled output == the int8 model on the whole image; Set5/Set14 x2 loss <= 0.10 dB."""
    from drn_tf.models.drn import bundled_model_path

    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("assets/drn_s_x2.keras (trained weights) not bundled")
    model = resolve_model(preset="drn_s_x2")
    lite = R.runtime_model(model, "litert-int8", cache_dir=tmp_path)
    assert lite.uint8_io and E.tflite_metadata(lite.path)["int8_recipe"] == EI.INT8_RECIPE
    whole = R.TFLiteUpscaler(lite.path)
    loss = {}
    for name in ("Set5", "Set14"):
        deltas = []
        # the protocol's pairs: grey bridge.png of Set14 stays one channel, as drn evaluate scores it
        for i, (_, lr, hr) in enumerate(ER._set5_pairs(data_dir / "benchmark" / name, 2)[1]):
            tiled = i < 3 and lr.shape[-1] == 3
            int8 = upscale(lr, model=lite, tile=64 if tiled else None)
            if tiled:  # tiled (64-pixel tiles, overlap 11) == one run of the same int8 model on the whole image
                np.testing.assert_array_equal(int8, whole.run(lr[None])[0])
            deltas.append(psnr_y(int8, hr, 2) - psnr_y(upscale(lr, model=model), hr, 2))
        loss[name] = -float(np.mean(deltas))
    assert max(loss.values()) <= INT8_LOSS_DB, loss


def _bundled_presets():
    from drn_tf.models.drn import bundled_model_path
    from drn_tf.models.presets import preset_names

    return [n for n in preset_names() if bundled_model_path(n) is not None]


def test_bundled_int8_ranges_match_the_bundled_weights():
    """Every bundled preset ships its int8 calibration (assets/int8.json), made from exactly its bundled
    weights with the current recipe (else: rerun converters/bundle_int8.py)."""
    import json

    from drn_tf.core.utils import assets_dir

    presets = _bundled_presets()
    if not presets:
        pytest.skip("no trained model bundled")
    manifest = json.loads((assets_dir() / R.INT8_MANIFEST).read_text())
    for name in presets:
        entry = manifest.get(name)
        assert entry, f"{name}: no bundled int8 calibration (python converters/bundle_int8.py {name})"
        model = DRN.from_preset(name)
        assert entry["recipe"] == EI.INT8_RECIPE, f"{name}: int8 recipe changed; rerun converters/bundle_int8.py"
        assert entry["weights"] == R.weights_digest(model), f"{name}: weights changed; rerun converters/bundle_int8.py"
        ranges = R.bundled_int8_ranges(model)
        assert ranges and all(lo <= 0.0 <= hi or lo < hi for lo, hi in ranges.values())
        assert set(ranges) == set(EI.tap_names(model)), name  # one range per tap
    assert R.bundled_int8_ranges(DRN.from_preset(presets[0], load_weights=False)) is None  # other weights


@pytest.mark.slow
def test_bundled_ranges_reproduce_the_calibrated_model(data_dir, tmp_path):
    """The int8 model converted from the bundled ranges (no images) is the model calibrated on the training
    images: the same outputs, bit for bit."""
    presets = _bundled_presets()
    if not presets:
        pytest.skip("no trained model bundled")
    model = DRN.from_preset("drn_s_x2" if "drn_s_x2" in presets else presets[0])
    from_ranges = E.convert_tflite(model, "int8", int8_ranges=R.bundled_int8_ranges(model))
    calibrated = E.convert_tflite(model, "int8", calibration=str(data_dir / "train"))
    x = np.random.default_rng(0).integers(0, 256, size=(1, 40, 36, 3), dtype=np.uint8)
    np.testing.assert_array_equal(R.TFLiteUpscaler(from_ranges).run(x), R.TFLiteUpscaler(calibrated).run(x))
    assert len(from_ranges) == len(calibrated)


def test_int8_runtime_on_a_fresh_install_needs_no_data(tmp_path, monkeypatch, rng):
    """Without calibration images (DRN_DATA points nowhere), a bundled preset still runs in int8: converted
    with its bundled ranges and cached; a model without bundled ranges still asks for the data."""
    presets = _bundled_presets()
    if not presets:
        pytest.skip("no trained model bundled")
    monkeypatch.setenv("DRN_DATA", str(tmp_path / "no-data"))
    model = resolve_model(preset="drn_s_x2" if "drn_s_x2" in presets else presets[0])
    lite = R.runtime_model(model, "litert-int8", cache_dir=tmp_path / "cache")
    assert lite.path.parent == tmp_path / "cache" and lite.uint8_io
    y, x = np.mgrid[0:24, 0:20]  # a smooth image: int8 holds it (noise would clip and run in float32)
    image = np.stack([100 + 3 * x, 80 + 2 * y, 120 + x + y], axis=-1).astype(np.uint8)
    s = model.get_config()["scale"]
    out = upscale(image, model=lite)
    np.testing.assert_array_equal(out, R.TFLiteUpscaler(lite.path).run(image[None])[0])
    assert lite.float_pixels == 0
    assert out.shape == (24 * s, 20 * s, 3)
    from drn_tf.models.resolve import ModelError

    with pytest.raises(ModelError, match="calibration images"):
        R.runtime_model(DRN.from_preset(presets[0], load_weights=False), "litert-int8", cache_dir=tmp_path / "c2")


@pytest.mark.slow
def test_every_bundled_int8_model_keeps_the_quality(data_dir, tmp_path):
    """The int8 promise for every bundled int8 file: Set5 and Set14 Y-PSNR (set means, by the protocol) within
    INT8_LOSS_DB of its fp32 model. The guard for newly bundled weights (training/bundle_run.py)."""
    from drn_tf.core.protocol import read_benchmark

    benches = {}  # (set, scale) -> the protocol's pairs, read once for the presets of that scale
    losses = {}
    for name in _bundled_presets():
        model = resolve_model(preset=name)
        # the int8 file the package ships for the preset (converted into tmp_path only if it is not current),
        # opened as drn upscale --runtime litert-int8 opens it
        lite = R.load_runtime(preset=name, runtime="litert-int8", cache_dir=tmp_path)
        s = model.get_config()["scale"]
        for set_name in ("Set5", "Set14"):
            if (set_name, s) not in benches:
                benches[set_name, s] = read_benchmark(data_dir / "benchmark" / set_name, s)
            bench = benches[set_name, s]
            deltas = [psnr_y(upscale(lr, model=lite), hr, s) - psnr_y(upscale(lr, model=model), hr, s)
                      for lr, hr in zip(bench.lrs, bench.hrs)]
            losses[f"{name} {set_name}"] = -float(np.mean(deltas))
    assert len(losses) == 2 * len(_bundled_presets()) and max(losses.values()) <= INT8_LOSS_DB, losses
