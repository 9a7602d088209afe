"""The LiteRT runtimes start without TensorFlow or Keras: ``drn upscale --runtime litert[-int8]`` on a bundled
preset opens the shipped ``.tflite`` (``assets/tflite/``), a user's ``.keras`` file its cached export, keyed by
the file's bytes (:mod:`drn_tf.inference.export_cache`); the shipped files are current.

The runs "without TensorFlow" are subprocesses in which ``import tensorflow`` and ``import keras`` fail
(``sys.modules[name] = None``), as on an install without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from drn_tf.inference import export_cache as X
from drn_tf.models.presets import get_preset, preset_names
from drn_tf.models.resolve import ModelError, bundled_file, locate
from paths import ROOT

BLOCKED = ("tensorflow", "keras")
# Run the drn command with TensorFlow and Keras unimportable; fail if either (or JAX) got loaded anyway.
BLOCKED_CLI = (
    "import sys\n"
    f"for name in {BLOCKED!r}:\n"
    "    sys.modules[name] = None\n"
    "from drn_tf.cli.main import main\n"
    "rc = main(sys.argv[1:])\n"
    "heavy = sorted({m.split('.')[0] for m, v in sys.modules.items() if v is not None\n"
    "                and m.split('.')[0] in ('tensorflow', 'keras', 'jax')})\n"
    "print('heavy modules:', heavy, file=sys.stderr)\n"
    "sys.exit(rc or (3 if heavy else 0))\n"
)


def _bundled() -> list[str]:
    return [n for n in preset_names() if bundled_file(n) is not None]


def _run_blocked(args, cwd, cache, python=sys.executable):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DRN_VERBOSE")}
    env["DRN_CACHE_DIR"] = str(cache)
    return subprocess.run([str(python), "-c", BLOCKED_CLI, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


# ---------------------------------------------------------------- the shipped files


def test_shipped_tflite_files_are_current():
    """Every bundled preset ships its float32 and int8 TFLite files, made from exactly its ``.keras`` file, the
    current int8 recipe and the bundled ranges (else: python converters/bundle_tflite.py)."""
    from drn_tf.export.int8 import INT8_RECIPE, SATURATION_FORMAT
    from drn_tf.export.tflite_metadata import drn_metadata

    presets = _bundled()
    if not presets:
        pytest.skip("no trained model bundled")
    manifest = X.bundled_manifest()
    int8 = json.loads((bundled_file(presets[0]).parent / X.INT8_MANIFEST).read_text())
    rerun = "rerun converters/bundle_tflite.py"
    for name in presets:
        entry = manifest.get(name)
        assert entry, f"{name}: no shipped TFLite files ({rerun} {name})"
        assert entry["keras_sha256"] == X.file_sha256(bundled_file(name)), f"{name}: the .keras file changed; {rerun}"
        assert int8[name]["weights"] == entry["weights"], f"{name}: assets/int8.json is of other weights"
        folder = bundled_file(name).parent / X.BUNDLED_EXPORTS
        for quantize, item in entry["files"].items():
            path = folder / item["file"]
            assert path.is_file() and X.file_sha256(path) == item["sha256"], f"{path}: changed or missing; {rerun}"
            meta = drn_metadata(path)
            assert meta["scale"] == get_preset(name)["config"]["scale"] and meta["quantize"] == quantize
        assert set(entry["files"]) == {"float32", "int8"}
        assert entry["files"]["int8"]["recipe"] == INT8_RECIPE, f"{name}: the int8 recipe changed; {rerun}"
        assert entry["files"]["int8"]["saturation"] == SATURATION_FORMAT, f"{name}: new saturation maps; {rerun}"
        assert int8[name]["recipe"] == INT8_RECIPE, f"{name}: rerun converters/bundle_int8.py, then {rerun}"
        ranges = {k: tuple(v) for k, v in int8[name]["ranges"].items()}
        assert entry["files"]["int8"]["ranges_sha256"] == X.ranges_digest(ranges), f"{name}: new ranges; {rerun}"
        source = X.ModelFile(bundled_file(name), name)
        for quantize, item in entry["files"].items():
            assert X.bundled_tflite(source, quantize) == folder / item["file"]


def test_a_stale_shipped_file_is_not_used(monkeypatch, tmp_path):
    """A new int8 recipe or saturation-map format, or other bytes than the manifest names, and the shipped file
    is passed over."""
    from drn_tf.export import int8 as EI

    presets = _bundled()
    if not presets:
        pytest.skip("no trained model bundled")
    name = presets[0]
    source = X.ModelFile(bundled_file(name), name)
    assert X.bundled_tflite(source, "int8") is not None and X.bundled_tflite(source, "float32") is not None
    monkeypatch.setattr(EI, "INT8_RECIPE", EI.INT8_RECIPE + " (changed)")
    assert X.bundled_tflite(source, "int8") is None and X.bundled_tflite(source, "float32") is not None
    monkeypatch.undo()
    monkeypatch.setattr(EI, "SATURATION_FORMAT", EI.SATURATION_FORMAT + " (changed)")
    assert X.bundled_tflite(source, "int8") is None and X.bundled_tflite(source, "float32") is not None
    monkeypatch.undo()
    edited = tmp_path / f"{name}.keras"
    edited.write_bytes(bundled_file(name).read_bytes() + b"\0")  # still a zip, other bytes
    assert X.bundled_tflite(X.ModelFile(edited), "float32") is None
    assert X.bundled_int8_ranges(X.ModelFile(edited)) is None  # a user file: no bundled ranges by its bytes


# ---------------------------------------------------------------- keys


def test_file_key_is_stable_and_follows_the_bytes(fresh_drn_s, tmp_path):
    """The key of a .keras file's export is its bytes': stable across objects and copies, new for another model,
    different per quantization; the file is not loaded to compute it."""
    path = tmp_path / "m.keras"
    fresh_drn_s(2).save(path)
    source = X.ModelFile(path)
    key = X.tflite_cache_key(source, "float32")
    assert X.tflite_cache_key(X.ModelFile(path), "float32") == key and source._model is None  # not loaded
    copy = tmp_path / "elsewhere" / "copy.keras"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert X.tflite_cache_key(X.ModelFile(copy), "float32") == key  # the content, not the path
    assert X.tflite_cache_key(source, "int8") != key
    fresh_drn_s(2).save(path)  # another model (new random weights) in the same file
    assert X.tflite_cache_key(X.ModelFile(path), "float32") != key
    assert X.source_digest(source).startswith("keras-file:")


def test_int8_key_of_a_file(tmp_path, monkeypatch):
    """A bundled model's int8 key holds its bundled ranges (found by the file's bytes, no Keras); a user file's
    holds the calibration images, so new images make a new file."""
    presets = _bundled()
    if not presets:
        pytest.skip("no trained model bundled")
    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    Image.new("RGB", (64, 64), (10, 20, 30)).save(train / "a.png")
    monkeypatch.setenv("DRN_DATA", str(tmp_path / "data"))
    bundled = X.ModelFile(bundled_file(presets[0]), presets[0])
    int8 = json.loads((bundled.path.parent / X.INT8_MANIFEST).read_text())[presets[0]]
    assert X.bundled_int8_ranges(bundled) == {k: tuple(v) for k, v in int8["ranges"].items()}
    assert X.tflite_settings(bundled, "int8")["ranges"] == X.bundled_int8_ranges(bundled)
    user = tmp_path / "user.keras"
    user.write_bytes(bundled.path.read_bytes() + b"\0")  # other bytes: not known as a bundled model
    key = X.tflite_cache_key(X.ModelFile(user), "int8")
    key_bundled = X.tflite_cache_key(bundled, "int8")
    Image.new("RGB", (64, 64), (200, 20, 30)).save(train / "b.png")  # a new calibration image
    assert X.tflite_cache_key(X.ModelFile(user), "int8") != key
    assert X.tflite_cache_key(bundled, "int8") == key_bundled  # bundled ranges: no data involved


def test_locate_finds_files_without_loading(tmp_path):
    presets = _bundled()
    if not presets:
        pytest.skip("no trained model bundled")
    name = presets[0]
    scale = get_preset(name)["config"]["scale"]
    found = locate(preset=name)
    assert found.model is None and found.source == "bundled" and found.path == bundled_file(name)
    with pytest.raises(ModelError, match=f"x{scale} model, but x"):
        locate(bundled_file(name), scale=scale % 4 + 2)
    with pytest.raises(ModelError, match="model file not found"):
        locate(tmp_path / "missing.keras")
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a valid .keras"):
        locate(tmp_path / "bad.keras")
    assert locate(object()) is None  # a model object: only loading tells


# ---------------------------------------------------------------- without TensorFlow


@pytest.mark.parametrize("runtime", ["litert-int8", "litert"])
def test_cli_on_a_bundled_preset_without_tensorflow(runtime, tmp_path, rng):
    """``drn upscale --runtime litert[-int8]`` with TensorFlow and Keras unimportable: the shipped file runs,
    nothing is converted or cached, and the output is the API's in this process."""
    import drn_tf

    presets = _bundled()
    if "drn_s_x2" not in presets:
        pytest.skip("drn_s_x2 not bundled")
    image = rng.integers(0, 256, size=(36, 44, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    r = _run_blocked(["upscale", "in.png", "--preset", "drn_s_x2", "--runtime", runtime, "-o", "out.png"],
                     tmp_path, tmp_path / "cache")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "heavy modules: []" in r.stderr and "XNNPACK" not in r.stderr
    assert not (tmp_path / "cache").exists()  # the shipped file: nothing converted
    out = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(out, drn_tf.upscale(image, preset="drn_s_x2", runtime=runtime, kind="clean"))


def test_api_on_a_bundled_preset_without_tensorflow(tmp_path):
    """``drn_tf.upscale(..., runtime="litert-int8")`` with TensorFlow and Keras unimportable."""
    if "drn_s_x2" not in _bundled():
        pytest.skip("drn_s_x2 not bundled")
    code = ("import sys\n"
            f"for name in {BLOCKED!r}:\n"
            "    sys.modules[name] = None\n"
            "import numpy as np, drn_tf\n"
            "x = np.arange(12 * 10 * 3, dtype=np.uint8).reshape(12, 10, 3)\n"
            "for runtime in ('litert-int8', 'litert'):\n"
            "    print(runtime, drn_tf.upscale(x, preset='drn_s_x2', runtime=runtime).shape)\n")
    env = dict(os.environ, DRN_CACHE_DIR=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split("\n")[:2] == ["litert-int8 (24, 20, 3)", "litert (24, 20, 3)"]


def test_user_model_converts_once_then_runs_without_tensorflow(fresh_drn_s, tmp_path, rng, monkeypatch):
    """A user's .keras file: the first run converts (Keras, once, cached by the file's bytes); the next runs open
    the cached file without TensorFlow."""
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.inference.upscale import upscale

    cache = tmp_path / "cache"
    monkeypatch.setenv("DRN_CACHE_DIR", str(cache))
    model_path = tmp_path / "m.keras"
    fresh_drn_s(2).save(model_path)
    lite = load_runtime(str(model_path), runtime="litert")
    assert lite.path.parent == cache / "tflite"
    image = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    r = _run_blocked(["upscale", "in.png", "--model", str(model_path), "--runtime", "litert", "-o", "out.png"],
                     tmp_path, cache)
    assert r.returncode == 0 and "heavy modules: []" in r.stderr, r.stderr[-3000:]
    assert "converting" not in r.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), upscale(image, model=lite))
    assert sorted(p.name for p in (cache / "tflite").glob("*.tflite")) == [lite.path.name]


def test_without_tensorflow_a_missing_conversion_says_so(tmp_path, fresh_drn_s):
    """A user's model never converted, on an install without TensorFlow: one line, no traceback."""
    model_path = tmp_path / "m.keras"
    fresh_drn_s(2).save(model_path)
    Image.new("RGB", (16, 16)).save(tmp_path / "in.png")
    r = _run_blocked(["upscale", "in.png", "--model", str(model_path), "--runtime", "litert", "-o", "out.png"],
                     tmp_path, tmp_path / "cache")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "drn upscale: error:" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_cached_onnx_and_openvino_run_without_tensorflow(runtime, fresh_drn_s, tmp_path, rng, monkeypatch):
    """ONNX Runtime and OpenVINO on a user's .keras file: converted once (TensorFlow), then opened from the
    cache without it."""
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.inference.upscale import upscale

    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime" if runtime == "onnxruntime" else "openvino")
    cache = tmp_path / "cache"
    monkeypatch.setenv("DRN_CACHE_DIR", str(cache))
    model_path = tmp_path / "m.keras"
    fresh_drn_s(2).save(model_path)
    first = load_runtime(str(model_path), runtime=runtime)
    image = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "in.png")
    r = _run_blocked(["upscale", "in.png", "--model", str(model_path), "--runtime", runtime, "-o", "out.png"],
                     tmp_path, cache)
    assert r.returncode == 0 and "heavy modules: []" in r.stderr and "converting" not in r.stderr, r.stderr[-3000:]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), upscale(image, model=first))


@pytest.mark.slow
def test_shipped_files_are_the_conversions_of_the_bundled_models(tmp_path, rng):
    """The shipped float32 and int8 files compute what a fresh conversion of the bundled model computes."""
    from drn_tf.inference.litert import LiteRTRuntime
    from drn_tf.models.resolve import resolve_model

    if "drn_s_x2" not in _bundled():
        pytest.skip("drn_s_x2 not bundled")
    model = resolve_model(preset="drn_s_x2")
    source = X.ModelFile(bundled_file("drn_s_x2"), "drn_s_x2")
    x = rng.integers(0, 256, size=(1, 30, 26, 3), dtype=np.uint8)
    for quantize in ("float32", "int8"):
        fresh = LiteRTRuntime(X.cached_tflite(model, quantize, cache_dir=tmp_path))
        shipped = LiteRTRuntime(X.bundled_tflite(source, quantize))
        np.testing.assert_allclose(shipped.run_batch(x), fresh.run_batch(x), atol=1e-5)


@pytest.mark.slow
def test_metadata_reader_follows_tensorflows_schema():
    """The TensorFlow-free reader of a TFLite file's metadata list gives what TensorFlow's own schema module
    reads (every entry, on every shipped file)."""
    from tensorflow.lite.python import schema_py_generated as schema

    from drn_tf.export.tflite_metadata import metadata_entries

    files = sorted((ROOT / "assets" / X.BUNDLED_EXPORTS).glob("*.tflite"))
    if not files:
        pytest.skip("no shipped TFLite files")
    for path in files:
        data = path.read_bytes()
        model = schema.Model.GetRootAsModel(data, 0)
        want = {model.Metadata(i).Name().decode(): bytes(model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy())
                for i in range(model.MetadataLength())}
        assert metadata_entries(data) == want and {"drn_tf", "TFLITE_METADATA"} <= set(want), path.name
