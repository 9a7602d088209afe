"""ONNX and OpenVINO: ``drn export onnx`` / ``drn export openvino`` and the runtimes ``onnxruntime``,
``openvino`` and ``openvino-bf16`` of ``drn upscale --runtime`` (drn_tf.export.onnx,
drn_tf.inference.onnx_runtime, drn_tf.inference.openvino_runtime).

Exported files go to per-test folders (``cache_dir``), never to the user's cache.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from drn_tf.core.metrics import psnr_y
from drn_tf.core.protocol import read_benchmark
from drn_tf.core.utils import cpu_has_bf16
from drn_tf.inference import runtimes as R
from drn_tf.inference.tiled import super_resolve
from drn_tf.inference.upscale import upscale
from drn_tf.models.drn import bundled_model_path
from drn_tf.models.resolve import ModelError, model_receptive_radius, resolve_model

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("tf2onnx")

FLOAT_RUNTIMES = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def model():
    """The bundled trained drn_s_x2: PSNR comparisons mean something."""
    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("assets/drn_s_x2.keras (trained weights) not bundled")
    return resolve_model(preset="drn_s_x2")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("export_cache")


@pytest.fixture(scope="module")
def runtimes(model, cache):
    return {name: R.runtime_model(model, name, cache_dir=cache) for name in FLOAT_RUNTIMES}


def _compare_on(model, runtimes, pairs):
    """Per runtime: the largest uint8 difference from Keras and the PSNR change over ``pairs``."""
    out = {}
    keras = [upscale(lr, model=model, runtime="keras") for _, lr, _ in pairs]
    keras_psnr = np.mean([psnr_y(sr, hr, 2) for sr, (_, _, hr) in zip(keras, pairs)])
    for name, runtime in runtimes.items():
        srs = [upscale(lr, model=runtime) for _, lr, _ in pairs]
        diff = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(srs, keras))
        out[name] = diff, float(np.mean([psnr_y(sr, hr, 2) for sr, (_, _, hr) in zip(srs, pairs)]) - keras_psnr)
    return out


def _set5(set5, limit=None):
    bench = read_benchmark(set5, 2, limit=limit)
    pairs = list(zip(bench.paths, bench.lrs, bench.hrs))
    return sorted(pairs, key=lambda p: p[1].size)  # smallest first


def test_onnx_and_openvino_match_keras_on_set5_image(model, runtimes, set5):
    """The smallest Set5 image (woman.png, 114x172 LR): within one 8-bit level of Keras, the same PSNR."""
    pairs = _set5(set5)[:1]
    for name, (diff, change) in _compare_on(model, runtimes, pairs).items():
        assert diff <= 1, (name, diff)
        assert abs(change) < 0.01, (name, change)


@pytest.mark.slow
def test_onnx_and_openvino_match_keras_on_all_of_set5(model, runtimes, set5):
    for name, (diff, change) in _compare_on(model, runtimes, _set5(set5)).items():
        assert diff <= 1, (name, diff)
        assert abs(change) < 0.01, (name, change)


def test_tiled_equals_whole(model, runtimes):
    image = np.random.default_rng(5).integers(0, 256, size=(45, 58, 3), dtype=np.uint8)
    radius = model_receptive_radius(model)
    for name, runtime in runtimes.items():
        assert runtime.name == name and runtime.scale == 2 and runtime.receptive_radius == radius
        whole = super_resolve(runtime, image)
        tiled = super_resolve(runtime, image, tile=30)  # 3 x 5 tiles, overlap 11
        np.testing.assert_allclose(tiled, whole, atol=1e-4, err_msg=name)


def test_onnx_file_takes_any_size(model, tmp_path, capsys):
    """drn export onnx: a dynamic-size file; onnxruntime runs it directly on two sizes (and a batch of two)."""
    import onnxruntime as ort

    from drn_tf.cli.main import main

    path = tmp_path / "drn.onnx"
    assert main(["export", "onnx", "--preset", "drn_s_x2", "-o", str(path)]) == 0
    assert "lr_image" in capsys.readouterr().out
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("lr_image", "sr_image")
    assert inp.shape[1:3] == ["height", "width"] and inp.shape[3] == 3
    rng = np.random.default_rng(3)
    for shape in ((1, 17, 23, 3), (2, 31, 12, 3)):
        x = rng.random(shape, dtype=np.float32)
        y = session.run(None, {"lr_image": x})[0]
        assert y.shape == (shape[0], shape[1] * 2, shape[2] * 2, 3)
        keras = np.clip(np.asarray(model.predict_on_batch(x)), 0.0, 1.0)
        np.testing.assert_allclose(y, keras, atol=1e-4)


def test_fixed_size_exports_are_tiled(model, tmp_path):
    """--input-size: fixed [1, H, W, 3] files; the runtimes declare input_size and the assembly tiles them."""
    from drn_tf.cli.main import main
    from drn_tf.inference.onnx_runtime import OnnxRuntime
    from drn_tf.inference.openvino_runtime import OpenVINORuntime

    onnx_path, xml = tmp_path / "fixed.onnx", tmp_path / "ov" / "fixed.xml"
    assert main(["export", "onnx", "--preset", "drn_s_x2", "--input-size", "24x30", "-o", str(onnx_path)]) == 0
    assert main(["export", "openvino", "--preset", "drn_s_x2", "--input-size", "24x30", "-o", str(xml)]) == 0
    assert xml.with_suffix(".bin").is_file()
    image = np.random.default_rng(7).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    want = upscale(image, model=model, runtime="keras")
    for runtime in (OnnxRuntime(onnx_path), OpenVINORuntime(xml)):
        assert runtime.input_size == (24, 30) and runtime.scale == 2
        got = upscale(image, model=runtime)
        assert int(np.abs(got.astype(int) - want.astype(int)).max()) <= 1, runtime.name


def test_files_are_converted_once(model, runtimes, cache, monkeypatch):
    """A cached ONNX / IR file is used as it is: no conversion on a hit."""
    from drn_tf.export import onnx as EO

    def fail(*a, **kw):
        raise AssertionError("converted again on a cache hit")

    monkeypatch.setattr(EO, "convert_onnx", fail)
    monkeypatch.setattr(EO, "convert_openvino", fail)
    for name in FLOAT_RUNTIMES:
        R._LOADED.clear()  # a new process: only the file cache is left
        assert R.runtime_model(model, name, cache_dir=cache).path == runtimes[name].path
    assert {p.suffix for p in cache.iterdir() if not p.name.startswith(".")} == {".bin", ".onnx", ".xml"}


def test_exported_files_open_without_tensorflow(runtimes):
    """The runtime classes read an exported file (and its scale and radius) without importing TensorFlow."""
    import subprocess

    code = (
        "import sys, numpy as np\n"
        "from drn_tf.inference.onnx_runtime import OnnxRuntime\n"
        "from drn_tf.inference.openvino_runtime import OpenVINORuntime\n"
        "from drn_tf.inference.tiled import super_resolve\n"
        f"onnx, xml = {str(runtimes['onnxruntime'].path)!r}, {str(runtimes['openvino'].path)!r}\n"
        "for r in (OnnxRuntime(onnx), OpenVINORuntime(xml)):\n"
        "    assert (r.scale, r.receptive_radius) == (2, 11)\n"
        "    assert super_resolve(r, np.zeros((30, 30, 3), np.uint8), tile=24).shape == (60, 60, 3)\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_openvino_bf16(model, cache, set5, monkeypatch):
    """On a CPU with AVX512_BF16/AMX: close to float (within 0.05 dB on a Set5 image); elsewhere refused in a line."""
    from drn_tf.core import utils

    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2", "avx512f"])
    with pytest.raises(ModelError, match="openvino-bf16 needs a CPU with AVX512_BF16 or AMX-BF16"):
        R.runtime_model(model, "openvino-bf16", cache_dir=cache)
    monkeypatch.undo()
    if not cpu_has_bf16():
        pytest.skip("this CPU has no AVX512_BF16 / AMX-BF16")
    bf16 = R.runtime_model(model, "openvino-bf16", cache_dir=cache)
    assert bf16.name == "openvino-bf16" and bf16.precision == "bf16"
    (diff, change), = _compare_on(model, {"openvino-bf16": bf16}, _set5(set5)[:1]).values()
    assert abs(change) < 0.05 and diff <= 16


@pytest.mark.parametrize("runtime, module, extra", [("onnxruntime", "onnxruntime", "onnx"),
                                                     ("openvino", "openvino", "openvino")])
def test_a_missing_package_says_what_to_install(model, tmp_path, monkeypatch, capsys, runtime, module, extra):
    from drn_tf.cli.main import main

    monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    R._LOADED.clear()
    with pytest.raises(ModelError, match=rf'{module} is not installed: pip install "drn-tf\[{extra}\]"'):
        R.runtime_model(model, runtime, cache_dir=tmp_path)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    code = main(["upscale", str(image), "--preset", "drn_s_x2", "--runtime", runtime, "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code != 0 and f'pip install "drn-tf[{extra}]"' in err and "Traceback" not in err


def test_export_report_measures_both_forms(model, data_dir):
    """drn export report's onnx and openvino rows: written from the export table, opened in their runtimes, the
    Keras PSNR, an IR's size counting its weights (.bin)."""
    from drn_tf.bench.export_report import build_report

    markdown, results = build_report(model, "drn_s_x2", data_dir, variants=("onnx", "openvino"), limit_images=1,
                                     extra_sets=(), runs=1, warmup=0, latency_size="32x32")
    rows = {r.name: r for r in results}
    assert list(rows) == ["keras", "onnx", "openvino"] and "| openvino |" in markdown
    for name in ("onnx", "openvino"):
        assert abs(rows[name].psnr - rows["keras"].psnr) < 0.01 and rows[name].max_diff <= 1.0, name
        assert rows[name].latency_ms > 0
    assert rows["openvino"].size_bytes > 0.9 * rows["onnx"].size_bytes  # the .bin holds the float32 weights
