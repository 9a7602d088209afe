"""``--runtime auto`` by measurement (drn_tf.inference.autoselect), ``--device`` (drn_tf.inference.devices) and
``--precision bf16`` (drn_tf.inference.bf16).

Every timing here is fake (an injected measure function or clock): no test depends on which runtime is
faster on the machine running it; the GPU tests fake TensorFlow's device list; bf16 tests check the refusal
where the CPU lacks bf16 and the rebuilt model (whose numbers do not depend on the CPU's instructions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from drn_tf.inference import autoselect as A
from drn_tf.inference import bf16 as B
from drn_tf.inference import devices as D
from drn_tf.inference import runtimes as R

ALL = lambda module: True  # noqa: E731 - every runtime's package "installed"
MEASURE_ENV = {A.ENV: "measure"}


class FakeMeasure:
    """A measure function with fixed seconds per runtime, counting its calls."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.calls = []

    def __call__(self, names):
        self.calls.append(tuple(names))
        return {n: self.seconds.get(n) for n in names}


def choose(tmp_path, measure=None, tag="DRN a", env=MEASURE_ENV, **kw):
    said = []
    choice = A.choose(tag, measure, path=tmp_path / "auto_runtime.json", progress=said.append, env=env,
                      find=kw.pop("find", ALL), flags=kw.pop("flags", ["avx2"]), **kw)
    return choice, said


# ---------------------------------------------------------------- choice and cache


def test_fastest_measured_runtime_wins_and_is_cached(tmp_path):
    fake = FakeMeasure({"keras": 0.30, "litert": 0.25, "onnxruntime": 0.12, "openvino": 0.20})
    first, said = choose(tmp_path, fake)
    assert (first.runtime, first.how) == ("onnxruntime", "measured")
    assert fake.calls == [("keras", "litert", "onnxruntime", "openvino")]  # float runtimes only, no int8/bf16
    assert said == [A.ANNOUNCE]
    doc = json.loads((tmp_path / "auto_runtime.json").read_text())
    (entry,) = doc.values()
    assert entry["runtime"] == "onnxruntime" and entry["ms"]["keras"] == 300.0
    assert entry["key"]["model"] == "DRN a" and entry["key"]["candidates"] == list(fake.calls[0])

    again, said = choose(tmp_path, FakeMeasure({"keras": 0.01}))  # a different "machine state": not measured
    assert (again.runtime, again.how, said) == ("onnxruntime", "cached", [])
    assert again.timings["onnxruntime"] == pytest.approx(0.12)


def test_a_failed_runtime_is_not_chosen(tmp_path):
    choice, _ = choose(tmp_path, FakeMeasure({"keras": 0.3, "litert": None, "onnxruntime": 0.5, "openvino": None}))
    assert choice.runtime == "keras"


def test_key_holds_model_cpu_and_versions(tmp_path, monkeypatch):
    fake = FakeMeasure({"keras": 0.3, "litert": 0.2, "onnxruntime": 0.4, "openvino": 0.5})
    choose(tmp_path, fake, tag="DRN small")
    choose(tmp_path, fake, tag="DRN small")
    assert len(fake.calls) == 1
    choose(tmp_path, fake, tag="DRN large")  # another model size: measured for itself
    assert len(fake.calls) == 2
    from drn_tf.core import utils

    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2", "fma", "avx512f"])  # another CPU
    choose(tmp_path, fake, tag="DRN small")
    assert len(fake.calls) == 3
    versions = A.versions()
    monkeypatch.setattr(A, "versions", lambda: {**versions, "onnxruntime": "99.0"})  # an upgraded package
    choose(tmp_path, fake, tag="DRN small")
    assert len(fake.calls) == 4
    assert len(json.loads((tmp_path / "auto_runtime.json").read_text())) == 4


def test_only_installed_runtimes_are_measured(tmp_path):
    fake = FakeMeasure({"keras": 0.3, "litert": 0.2})
    missing = {"onnxruntime", "openvino"}
    choice, _ = choose(tmp_path, fake, find=lambda m: m not in missing)
    assert fake.calls == [("keras", "litert")] and choice.runtime == "litert"
    only, said = choose(tmp_path, fake, find=lambda m: m == "tensorflow")  # keras alone: nothing to time
    assert (only.runtime, only.how, said) == ("keras", "only", [])


@pytest.mark.parametrize("damage", ["corrupt", "not a dict", "binary"])
def test_corrupt_cache_is_measured_again_and_replaced(tmp_path, damage):
    path = tmp_path / "auto_runtime.json"
    path.write_bytes({"corrupt": b'{"abc": {"runtime": "ke', "not a dict": b"[1, 2]", "binary": b"\xff\xfe\x00"}[damage])
    choice, _ = choose(tmp_path, FakeMeasure({"keras": 0.3, "litert": 0.2, "onnxruntime": 0.4, "openvino": 0.5}))
    assert choice.runtime == "litert"
    assert list(json.loads(path.read_text()).values())[0]["runtime"] == "litert"


def test_unwritable_cache_or_nothing_to_measure_falls_back_to_the_rule(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fake = FakeMeasure({"keras": 0.3, "litert": 0.1, "onnxruntime": 0.4, "openvino": 0.5})
    said = []
    choice = A.choose("DRN a", fake, path=blocker / "auto_runtime.json", progress=said.append, env=MEASURE_ENV,
                      find=ALL, flags=["avx2", "avx512f"])
    assert (choice.runtime, choice.how, fake.calls, said) == ("keras", "rule", [], [])
    assert "not writable" in choice.note
    for flags, want in ((["avx2", "avx512f"], "keras"), (["avx2"], "litert")):
        assert choose(tmp_path, None, flags=flags)[0].runtime == want  # no measure function: the rule


def test_measuring_failure_falls_back_to_the_rule(tmp_path):
    def broken(names):
        raise RuntimeError("out of memory")

    choice, said = choose(tmp_path, broken, flags=["avx2"])
    assert (choice.runtime, choice.how) == ("litert", "rule") and "out of memory" in choice.note
    nothing, _ = choose(tmp_path, FakeMeasure({}), flags=["avx2", "avx512f"])
    assert (nothing.runtime, nothing.how) == ("keras", "rule")
    assert not (tmp_path / "auto_runtime.json").exists()  # nothing cached from a failure


def test_environment_forces_remeasuring_or_the_rule(tmp_path):
    fast_litert = FakeMeasure({"keras": 0.3, "litert": 0.1, "onnxruntime": 0.4, "openvino": 0.5})
    choose(tmp_path, fast_litert)
    fast_keras = FakeMeasure({"keras": 0.1, "litert": 0.3, "onnxruntime": 0.4, "openvino": 0.5})
    assert choose(tmp_path, fast_keras, env={A.ENV: "remeasure"})[0].runtime == "keras"
    assert fast_keras.calls and choose(tmp_path, None)[0].runtime == "keras"  # the new measurement is cached
    rule, said = choose(tmp_path, fast_litert, env={A.ENV: "rule"}, flags=["avx2"])
    assert (rule.runtime, rule.how, said, len(fast_litert.calls)) == ("litert", "rule", [], 1)


def test_bf16_chooses_among_the_bf16_engines(tmp_path):
    fake = FakeMeasure({"keras-bf16": 0.2, "openvino-bf16": 0.1})
    choice, _ = choose(tmp_path, fake, precision="bf16")
    assert fake.calls == [("keras-bf16", "openvino-bf16")] and choice.runtime == "openvino-bf16"
    assert choose(tmp_path, None)[0].how == "rule"  # the float entry is keyed apart: not cached
    assert choose(tmp_path, None, precision="bf16")[0].runtime == "openvino-bf16"


def test_measure_runtimes_interleaves_and_skips_what_fails():
    order = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def run_batch(self, batch):
            assert batch.shape == (1, 16, 16, 3)
            order.append(self.name)

    def build(name):
        if name == "broken":
            raise RuntimeError("no such engine")
        return Fake(name)

    clock = iter(range(1000))
    times = A.measure_runtimes(build, ("a", "broken", "b"), size=(16, 16), rounds=3, warmup=1,
                               timer=lambda: next(clock))
    assert times == {"a": 1, "broken": None, "b": 1}  # fake clock: one tick per timed run
    assert order == ["a", "b"] + ["a", "b"] * 3  # warm-up, then round after round


def test_model_tag_is_the_family_and_size_without_tensorflow(fresh_drn_s, tmp_path):
    assert A.model_tag(None, "drn_x2") == A.model_tag(None, "drn_x2_photo") == A.model_tag(None, None, 2)
    assert A.model_tag(None, "drn_x2") != A.model_tag(None, "drn_s_x2") != A.model_tag(None, "drn_s_x3")
    path = tmp_path / "m.keras"
    model = fresh_drn_s(2)
    model.save(path)
    assert A.model_tag(str(path)) == A.model_tag(model) == A.model_tag(None, "drn_s_x2")
    (tmp_path / "bad.keras").write_text("not a zip")
    assert A.model_tag(str(tmp_path / "bad.keras")) == "unknown"


def test_cached_non_keras_winner_starts_without_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from drn_tf.inference import autoselect as A, runtimes as R\n"
        "tag = A.model_tag(None, 'drn_x2')\n"
        "A.choose(tag, lambda names: {n: (0.1 if n == 'litert' else 0.5) for n in names})\n"
        "assert R.resolve_runtime('auto', tag=tag) == 'litert'\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'a framework was imported'\n"
    )
    env = {**os.environ, "DRN_CACHE_DIR": str(tmp_path), A.ENV: "measure", "CUDA_VISIBLE_DEVICES": "-1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert A.ANNOUNCE in out.stderr


def test_resolve_runtime_measures_through_the_runtime_table(fresh_drn_s, tmp_path, monkeypatch):
    """runtime_model(model, 'auto') builds each candidate from the model and times it (the clock faked)."""
    monkeypatch.setenv("DRN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(A.ENV, "measure")
    monkeypatch.setattr(A, "installed", lambda names, find=None: ("keras", "litert"))
    monkeypatch.setattr(D, "gpu_visible", lambda devices=None: False)
    built = []
    monkeypatch.setattr(A, "measure_runtimes", lambda build, names, **kw: {n: (built.append(build(n).name) or
                                                                            {"keras": 0.5, "litert": 0.1}[n])
                                                                        for n in names})
    model = fresh_drn_s(2)
    runtime = R.runtime_model(model, "auto", cache_dir=tmp_path / "files")
    assert built == ["keras", "litert"] and runtime.name == "litert"
    assert A.cached_choice(A.model_tag(model), candidates=("keras", "litert")).runtime == "litert"


# ---------------------------------------------------------------- devices


def test_device_names_and_errors():
    assert D.parse_device("cpu") == "/CPU:0" and D.parse_device("GPU") == "/GPU:0" and D.parse_device("gpu:2") == "/GPU:2"
    for bad in ("tpu", "gpu:", "gpu:-1", "cuda:0"):
        with pytest.raises(D.DeviceError, match="device must be cpu, gpu or gpu:N"):
            D.parse_device(bad)
    seen = ["CPU:0", "GPU:0"]
    assert D.check_device("gpu", seen) == "/GPU:0" and D.check_device("cpu", seen) == "/CPU:0"
    with pytest.raises(D.DeviceError, match=r"device gpu:1: no such device; visible devices: CPU:0, GPU:0$"):
        D.check_device("gpu:1", seen)
    with pytest.raises(D.DeviceError, match=r"no GPU visible to TensorFlow\); visible devices: CPU:0$"):
        D.check_device("gpu", ["CPU:0"])


def test_auto_picks_keras_when_a_gpu_is_visible(monkeypatch):
    def never(names):
        raise AssertionError("measured CPU runtimes although a GPU is visible")

    monkeypatch.setenv(A.ENV, "measure")
    monkeypatch.setattr(D, "gpu_driver_present", lambda: True)
    monkeypatch.setattr(D, "list_devices", lambda: ["CPU:0", "GPU:0"])
    assert R.resolve_runtime("auto", tag="DRN gpu test", measure=never) == "keras"
    assert R.resolve_runtime("auto", device="gpu:0", tag="DRN gpu test", measure=never) == "keras"
    with pytest.raises(D.DeviceError, match="runs the Keras model"):
        R.resolve_runtime("litert", device="gpu")
    assert R.resolve_runtime("litert", device="cpu") == "litert"
    monkeypatch.setattr(D, "list_devices", lambda: ["CPU:0"])  # a driver but a CPU-only TensorFlow
    assert not D.gpu_visible()
    monkeypatch.setattr(D, "gpu_driver_present", lambda: False)
    assert D.gpu_visible(["CPU:0", "GPU:0"]) and not D.gpu_visible(["CPU:0"])


def test_keras_runtime_on_a_device(fresh_drn_s, monkeypatch):
    from drn_tf.models.resolve import ModelError

    model = fresh_drn_s(2)
    x = np.random.default_rng(0).random((1, 12, 12, 3), dtype=np.float32)
    placed = R.runtime_model(model, "keras", device="cpu")
    assert placed.device == "/CPU:0"
    np.testing.assert_allclose(placed.run_batch(x), R.runtime_model(model, "keras").run_batch(x), atol=1e-6)
    monkeypatch.setattr(D, "list_devices", lambda: ["CPU:0"])
    with pytest.raises(ModelError, match=r"device gpu:1: no such device .*visible devices: CPU:0"):
        R.runtime_model(model, "keras", device="gpu:1")


def test_upscale_cli_device_and_precision_refusals(tmp_path, capsys, fresh_drn_s, monkeypatch):
    from PIL import Image

    from drn_tf.cli.main import main
    from drn_tf.core import utils

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    model = tmp_path / "m.keras"
    fresh_drn_s(2).save(model)
    monkeypatch.setattr(D, "list_devices", lambda: ["CPU:0"])
    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2", "fma"])
    base = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", str(model)]
    for extra, said in ((["--device", "tpu"], "device must be cpu, gpu or gpu:N"),
                        (["--device", "gpu:1"], "device gpu:1: no such device (no GPU visible to TensorFlow); "
                                                "visible devices: CPU:0"),
                        (["--runtime", "litert", "--device", "gpu"], "runs the Keras model"),
                        (["--precision", "bf16"], "--precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16")):
        assert main(base + extra) != 0
        err = capsys.readouterr().err.strip()
        assert said in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- bf16


def test_bf16_runtime_names():
    assert B.runtime_for_precision("keras", "bf16") == "keras-bf16"
    assert B.runtime_for_precision("openvino", "bf16") == "openvino-bf16"
    assert B.runtime_for_precision("litert", "float32") == "litert"
    with pytest.raises(B.PrecisionError, match="runs on keras or openvino"):
        B.runtime_for_precision("litert-int8", "bf16")
    with pytest.raises(B.PrecisionError, match="precision must be one of"):
        B.runtime_for_precision("keras", "fp8")


def test_bf16_is_refused_on_a_cpu_without_it(monkeypatch):
    from drn_tf.core import utils

    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2", "fma", "avx512f"])
    monkeypatch.delenv(B.EMULATE_ENV, raising=False)
    with pytest.raises(B.PrecisionError, match=r"^--precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16;"):
        R.resolve_runtime("keras", precision="bf16")
    with pytest.raises(B.PrecisionError):
        R.resolve_runtime("auto", precision="bf16")
    assert B.bf16_refusal(["avx512_bf16"]) is None and B.bf16_refusal(["amx_bf16"]) is None
    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2", "avx512_bf16"])
    assert R.resolve_runtime("keras", precision="bf16") == "keras-bf16"
    assert R.resolve_runtime("openvino", precision="bf16") == "openvino-bf16"


def test_bf16_model_computes_in_bf16_with_the_same_weights(fresh_drn_s):
    """The rebuilt model (bf16 math, float32 variables and ends): close to the float32 output, not equal."""
    import keras

    model = fresh_drn_s(2)
    half = B.bf16_model(model)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    assert {layer.dtype_policy.name for layer in half.layers} >= {"mixed_bfloat16", "float32"}
    for a, b in zip(model.weights, half.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = np.random.default_rng(1).random((1, 16, 16, 3), dtype=np.float32)
    ref = np.asarray(model.predict_on_batch(x))
    out = np.asarray(half.predict_on_batch(x), dtype=np.float32)
    diff = np.abs(out - ref).max()
    assert 0 < diff < 0.05


def test_python_api_takes_precision_and_device(fresh_drn_s, monkeypatch):
    from drn_tf import upscale
    from drn_tf.core import utils
    from drn_tf.models.resolve import ModelError

    model = fresh_drn_s(2)
    img = (np.random.default_rng(2).random((10, 12, 3)) * 255).astype(np.uint8)
    on_cpu = upscale(img, model=model, runtime="keras", device="cpu")
    np.testing.assert_array_equal(on_cpu, upscale(img, model=model, runtime="keras"))
    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2"])
    with pytest.raises(ModelError, match="--precision bf16 needs a CPU with AVX512_BF16"):
        upscale(img, model=model, runtime="keras", precision="bf16")
    monkeypatch.setattr(D, "list_devices", lambda: ["CPU:0"])
    with pytest.raises(ModelError, match="visible devices: CPU:0"):
        upscale(img, model=model, runtime="keras", device="gpu", outscale=1.5)


def test_beam_precision_bf16_refused_in_one_line(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from drn_tf.cli.main import main
    from drn_tf.core import utils

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(utils, "cpu_flags", lambda: ["avx2", "avx512f"])
    rc = main(["beam", str(tmp_path / "*.png"), str(tmp_path / "out"), "--precision", "bf16"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "--precision bf16 needs a CPU with AVX512_BF16 or AMX-BF16" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["beam", str(tmp_path / "*.png"), str(tmp_path / "out"), "--precision", "fp8"])


def test_drn_upscale_measures_once_says_so_and_quiet_says_nothing(tmp_path, capsys, fresh_drn_s, monkeypatch):
    from PIL import Image

    from drn_tf.cli.main import main

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in.png")
    model = tmp_path / "m.keras"
    fresh_drn_s(2).save(model)
    monkeypatch.setenv("DRN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(A.ENV, "measure")
    monkeypatch.setattr(A, "installed", lambda names, find=None: ("keras", "litert"))
    monkeypatch.setattr(D, "gpu_visible", lambda devices=None: False)
    measured = []
    monkeypatch.setattr(A, "measure_runtimes", lambda build, names, **kw: measured.append(names) or
                        {"keras": 0.1, "litert": 0.2})
    base = ["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "--model", str(model), "--overwrite"]
    assert main(base) == 0
    assert capsys.readouterr().err.count(A.ANNOUNCE) == 1 and len(measured) == 1
    assert main(base) == 0  # cached: not measured, not said
    assert A.ANNOUNCE not in capsys.readouterr().err and len(measured) == 1
    monkeypatch.setenv(A.ENV, "remeasure")
    assert main(base + ["-q"]) == 0
    assert capsys.readouterr().err == "" and len(measured) == 2
