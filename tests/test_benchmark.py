"""``drn benchmark`` (drn_tf.bench.benchmark, drn_tf/cli/commands/benchmark.py).

No timed assertions (the machine is shared and noisy): the tests check that
every variant is measured and every field reported, that the derived figures
are consistent with each other (GFLOP/s from the MACs and the latency, % of
the peak from the peak), and that a variant that cannot be built is reported
as unavailable with its reason instead of failing the run. The goals and
notes of one round (tools/benchmark_notes.py) and the diagnostics of past
rounds (tools/benchmark_diagnostics.py) are tested at their home in tools/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from drn_tf.bench import benchmark as B  # noqa: E402
from drn_tf.models.analysis import count_macs  # noqa: E402
from drn_tf.models.presets import get_preset  # noqa: E402

from paths import ROOT, load_tool  # noqa: E402

N = load_tool("benchmark_notes")  # the round's goals and notes
D = load_tool("benchmark_diagnostics")  # the diagnostics of past rounds
REGISTRY = {**B.VARIANTS, **D.DIAGNOSTICS}


# ---------------------------------------------------------------- pure functions


def test_parse_variants_groups_and_errors():
    from drn_tf.cli.base import UserError
    from drn_tf.cli.commands.benchmark import parse_variants

    assert parse_variants(None) == B.ALL_VARIANTS
    assert parse_variants("train") == ("train-graph", "train-bf16", "train-xla", "train-pipeline", "train-jax")
    assert parse_variants("tflite-int8,keras") == ("keras-eager", "keras-graph", "keras-xla", "tflite-int8")
    with pytest.raises(UserError, match="unknown variant 'tflite-int4'"):
        parse_variants("keras-graph,tflite-int4")


def test_interleaved_round_robin_order():
    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    times = B.interleaved(fns, runs=3, warmup=2)
    # warm-up per function first, then rounds in turn
    assert calls == ["a", "a", "b", "b", "c", "c"] + ["a", "b", "c"] * 3
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def _row(name, latency_s, flops, peak=100.0):
    r = B.Row(name, REGISTRY[name].description, REGISTRY[name].kind)
    B._fill(r, [latency_s, latency_s * 1.5, latency_s * 1.2], flops)
    r.pct_peak = 100 * r.gflops / peak
    r.pct_peak_best = 100 * r.gflops_best / peak
    if r.kind == "training":
        r.patches_per_s = 16 / (1.2 * latency_s)
    else:
        r.output_mp_per_s = 0.262 / (1.2 * latency_s)
    return r


def test_fill_uses_median_and_best():
    r = B.Row("keras-graph", "x", "inference")
    B._fill(r, [3.0, 1.0, 2.0], flops=4e9)
    assert r.latency_ms == pytest.approx(2000.0) and r.best_ms == pytest.approx(1000.0)
    assert r.gflops == pytest.approx(2.0) and r.gflops_best == pytest.approx(4.0)
    assert r.samples_ms == [3000.0, 1000.0, 2000.0]


def test_goals_met_and_not_met():
    flops = 100e9
    rows = {
        "keras-graph": _row("keras-graph", 1.25, flops),  # median 1.5 s -> 66.7 GFLOP/s = 66.7 % of 100
        "keras-xla": _row("keras-xla", 1.0, flops),  # median 1.2 s -> 83.3 %
        "tflite-int8": _row("tflite-int8", 0.4, flops),  # 3x keras-xla
        "train-graph": _row("train-graph", 2.0, 3 * flops),  # 125 %
    }
    goals = {g["goal"]: g for g in N.evaluate_goals({k: vars(r) for k, r in rows.items()})}
    k = goals["keras_fp32_pct_peak"]
    assert k["variant"] == "keras-xla" and k["measured"] == pytest.approx(100 / 1.2) and k["met"] is True
    i = goals["int8_speedup"]
    assert i["measured"] == pytest.approx(2.5) and i["met"] is False
    assert i["measured_best"] == pytest.approx(2.5)
    t = goals["train_pct_peak"]
    assert t["measured"] == pytest.approx(125.0) and t["met"] is True
    # nothing measured -> not measured, never "met"
    none = {g["goal"]: g for g in N.evaluate_goals({})}
    assert all(g["measured"] is None and g["met"] is None for g in none.values())


def _fake_result(rows, profiles=None):
    peak = 100.0
    return {
        "date": "2026-01-01 00:00:00",
        "elapsed_s": 1.0,
        "machine": {"cpu_model": "Test CPU", "cores": 2, "cpu_flags": ["avx2"], "system": "Linux",
                    "load_average_start": 0.5, "load_average_end": 0.6, "tensorflow": "2.x", "onednn": True,
                    "keras": "3.x", "ai_edge_litert": "2.x", "intra_op_threads": 2, "inter_op_threads": 2},
        "model": {"source": "preset drn_x2, freshly initialised", "preset": "drn_x2", "scale": 2, "parameters": 1094636,
                  "macs_per_output_megapixel": 273.264e9},
        "settings": {"runs": 3, "warmup": 1, "train_runs": 3, "train_warmup": 1},
        "input": {"height": 256, "width": 256, "output_megapixels": 0.262, "macs": 71.6e9, "gflop": 143.3},
        "training_input": {"batch": 16, "patch": 48, "gflop_per_step": 241.8, "flops_rule": "3 x forward"},
        "peak": {"gflops": peak, "gflops_best": peak, "what": "matmul", "samples_ms": {"graph": [1.0, 2.0]}},
        "int8_peak": {"gops": 380.0, "gops_best": 400.0, "ratio_to_fp32_peak": 3.8, "ratio_to_fp32_peak_best": 4.0,
                      "what": "int8 FC"},
        "input_pipeline_patches_per_s": 5000.0,
        "rows": [vars(r) for r in rows.values()],
        "profiles": profiles or {},
    }


def test_markdown_and_notes_report_every_goal_and_unavailable_variants():
    flops = 143.3e9
    rows = {
        "keras-graph": _row("keras-graph", 1.0, flops),
        "keras-graph-concat": _row("keras-graph-concat", 1.1, flops),
        "keras-xla": _row("keras-xla", 1.2, flops),
        "tflite-int8": _row("tflite-int8", 0.4, flops),
        "tflite-int8-convs": _row("tflite-int8-convs", 0.36, flops),
        "train-graph": _row("train-graph", 2.0, 241.8e9),
        "train-xla": _row("train-xla", 2.4, 241.8e9),
        # a diagnostic, never a goal's figure even when faster
        "train-graph-concat": _row("train-graph-concat", 1.0, 241.8e9),
        "train-bf16": _row("train-bf16", 0.5, 241.8e9),
    }
    missing = B.Row("tflite-float16", B.VARIANTS["tflite-float16"].description, "inference", available=False,
                    reason="RuntimeError: drn_tf.export.tflite has no TFLite conversion")
    rows["tflite-float16"] = missing
    profiles = {
        "inference": B.summarise_profile({"_MklNativeFusedConv2D": 900.0, "Pad": 60.0, "AddV2": 40.0,
                                          "__wall__": 1000.0}, flops),
        "training": None,
    }
    result = _fake_result(rows, profiles)
    goals = N.evaluate_goals({k: vars(r) for k, r in rows.items()})
    notes = N.explain(result, goals)
    assert set(notes) == {"Keras fp32 inference", "TFLite int8 speed-up", "Training"}
    assert "**not met**" in notes["TFLite int8 speed-up"] and "met." in notes["Keras fp32 inference"]
    # the comparisons are computed from the rows: concat form 10 % slower, XLA 20 % slower
    assert "+10.0% throughput on the medians" in notes["Keras fp32 inference"]
    assert "stays in graph mode" in notes["Keras fp32 inference"]
    assert "90% of the op time" in notes["Keras fp32 inference"]
    assert "`train-graph-concat`): -50.0% throughput on the medians" in notes["Training"]
    assert "(`train-bf16`, not counted in the goal): +300.0% throughput" in notes["Training"]
    assert {g["goal"]: g["variant"] for g in goals}["train_pct_peak"] == "train-graph"
    text = B.to_markdown(result)
    for r in rows.values():
        assert f"| {r.name} |" in text
    assert "unavailable: RuntimeError: drn_tf.export.tflite has no TFLite conversion" in text
    assert "**2 cores**" in text and "Test CPU" in text
    assert "| inference | 1000.0 |" in text and "profile unavailable" in text
    # the library reports facts only: no targets, no verdicts
    assert "### Goals" not in text and "### Notes" not in text and "**not met**" not in text
    notes_text = N.notes_markdown(result)
    assert notes_text.count("**not met**") == 1 and "| **no** |" in notes_text
    assert "The goals are stated for" not in notes_text  # drn_x2, 256x256, 2 cores: the goals' own conditions
    for key, note in notes.items():
        assert f"- **{key}**: {note}" in notes_text


def test_profile_summary_flags_overlapping_convolutions():
    p = B.summarise_profile({"_MklNativeConv2DBackpropInput": 800.0, "_MklNativeConv2DBackpropFilterWithBias": 700.0,
                             "Sub": 50.0, "__wall__": 1000.0}, flops=100e9)
    assert p["overlap"] is True and p["conv_gflops"] is None
    assert p["conv_share_pct"] == pytest.approx(100 * 1500 / 1550, abs=0.1)
    q = B.summarise_profile({"_MklNativeFusedConv2D": 500.0, "Pad": 100.0, "__wall__": 550.0}, flops=100e9)
    assert q["overlap"] is False and q["conv_gflops"] == pytest.approx(200.0)
    assert B.summarise_profile(None, 1.0) is None


def test_cli_user_errors(capsys):
    from drn_tf.cli.main import main

    assert main(["benchmark", "--size", "big"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drn benchmark: error:") and "must look like HxW" in err and err.count("\n") == 1
    assert main(["benchmark", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert main(["benchmark", "--variants", "keras-graph,gpu"]) == 2
    assert "unknown variant 'gpu'" in capsys.readouterr().err
    assert main(["benchmark", "--model", "/nonexistent/model.keras"]) == 2
    assert "no such model file" in capsys.readouterr().err


# ---------------------------------------------------------------- measuring


def test_conv_chain_has_the_models_convolutions(fresh_drn_s):

    model = fresh_drn_s(3)
    chain = D.conv_chain_model(model)
    # every weight of a DRN belongs to a convolution, so the chain has them all, in the same shapes
    assert chain.count_params() == model.count_params()
    assert sorted(tuple(w.shape) for w in chain.weights) == sorted(tuple(w.shape) for w in model.weights)
    assert chain.scale == 3
    out = chain.predict_on_batch(np.zeros((1, 5, 7, 3), "float32"))
    assert out.shape == (1, 15, 21, 3)


def test_unavailable_variant_is_reported_not_fatal(monkeypatch):
    import drn_tf.export.tflite as E
    from drn_tf.export import common as EC  # noqa: E402

    def broken(*args, **kwargs):
        raise EC.ExportError("conversion exploded")

    monkeypatch.setattr(E, "convert_tflite", broken)
    monkeypatch.setattr("drn_tf.models.drn.bundled_model_path", lambda name: None)
    settings = B.Settings(size=(12, 16), runs=1, warmup=0, matmul_n=128, int8_matmul_n=64, profile=False)
    result = B.run_benchmark("drn_s_x2", variants=("keras-graph", "tflite-int8"), settings=settings)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["tflite-int8"]["available"] is False
    assert rows["tflite-int8"]["reason"] == "ExportError: conversion exploded"
    assert rows["keras-graph"]["available"] and rows["keras-graph"]["latency_ms"] > 0
    assert "freshly initialised" in result["model"]["source"] and result["model"]["trained"] is False
    goals = {g["goal"]: g for g in N.evaluate_goals(rows)}
    assert goals["int8_speedup"]["met"] is None and goals["train_pct_peak"]["met"] is None
    assert "unavailable: ExportError: conversion exploded" in B.to_markdown(result)
    assert "### Goals" in N.notes_markdown(result)


def test_int8_row_of_a_bundled_preset_reads_no_data(tmp_path, monkeypatch):
    """The tflite-int8 row of a bundled preset is made from the ranges shipped with it, as drn export tflite
    --quantize int8 makes it: it runs with an empty data folder (calibrating would find no images there), and its
    note, in the markdown's variant column, says which ranges it used."""
    from drn_tf.models.drn import bundled_model_path

    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("assets/drn_s_x2.keras (trained weights) not bundled")
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("DRN_DATA", str(empty))
    settings = B.Settings(size=(12, 16), runs=1, warmup=0, matmul_n=128, int8_matmul_n=64, profile=False)
    result = B.run_benchmark("drn_s_x2", variants=("tflite-int8",), settings=settings)
    row = {r["name"]: r for r in result["rows"]}["tflite-int8"]
    assert result["model"]["trained"] is True
    assert row["available"], row["reason"]
    assert row["latency_ms"] > 0
    assert "int8 ranges bundled with preset drn_s_x2" in row["note"] and "calibrated" not in row["note"]
    assert f"| tflite-int8 | {B.VARIANTS['tflite-int8'].description} (" in B.to_markdown(result)
    assert "int8 ranges bundled with preset drn_s_x2" in B.to_markdown(result)


def test_rows_are_built_by_the_training_recipe_and_the_export_table():
    """The training rows compile the net with drn train's optimizer and loss (the recipe's builders on the default
    configuration); the exported rows are the forms of drn_tf.export.formats.FORMATS."""
    from drn_tf.export.formats import FORMATS
    from drn_tf.train.config import DEFAULTS
    from drn_tf.train.recipe import build_loss, build_optimizer

    net = B.training_net({"scale": 2, "channels": 8, "growth": 4, "num_blocks": 2, "num_groups": 1})
    want = build_optimizer(DEFAULTS)
    assert type(net.optimizer) is type(want)
    drop = ("name", "learning_rate")
    assert {k: v for k, v in net.optimizer.get_config().items() if k not in drop} == \
        {k: v for k, v in want.get_config().items() if k not in drop}
    assert net.optimizer.get_config()["learning_rate"] == want.get_config()["learning_rate"]  # the same schedule
    assert type(net.loss) is type(build_loss(DEFAULTS))
    exported = [n for n in B.VARIANTS if n in FORMATS]
    assert exported == ["saved_model", "tflite-float32", "tflite-float16", "tflite-dynamic", "tflite-int8"]
    assert all(B.VARIANTS[n].description.startswith(FORMATS[n].description) for n in exported)


def test_first_form_diagnostic_is_the_same_function(fresh_drn_s):

    model = fresh_drn_s(2)
    x = np.random.default_rng(0).random((1, 9, 11, 3), dtype=np.float32)
    ref = model.predict_on_batch(x)
    first = D.first_form_copy(model)
    blocks = [b for layer in first.layers if hasattr(layer, "blocks") for b in layer.blocks]
    assert blocks and all(type(b) is D.FirstFormBlock for b in blocks)
    assert all(type(b) is not D.FirstFormBlock for layer in model.layers if hasattr(layer, "blocks")
               for b in layer.blocks)  # the original keeps the library's form
    np.testing.assert_array_equal(first.predict_on_batch(x), ref)  # bit-identical (adding 0.0 is exact)


def test_registry_specs_and_an_extended_registry():
    assert B.ALL_VARIANTS == tuple(B.VARIANTS)
    assert {v.kind for v in REGISTRY.values()} == {"inference", "training"}
    # each spec either builds a timer (timed round-robin) or measures itself (another process), not both
    assert all((v.build is None) != (v.measure is None) for v in REGISTRY.values())
    assert [n for n, v in B.VARIANTS.items() if v.measure] == ["train-jax"]
    assert list(D.REGISTRY)[:3] == ["keras-eager", "keras-graph", "keras-graph-concat"]
    assert set(D.REGISTRY) == set(REGISTRY)
    with pytest.raises(ValueError, match="unknown variant.*keras-graph-concat"):
        B.run_benchmark("drn_s_x2", variants=("keras-graph-concat",), settings=B.Settings(size=(8, 8)))
    # a diagnostic of tools/ through the library's run: one registry entry is all it takes
    settings = B.Settings(size=(12, 16), runs=1, warmup=0, matmul_n=128, int8_matmul_n=64, profile=False)
    result = B.run_benchmark("drn_s_x2", variants=("keras-graph", "keras-graph-concat"), settings=settings,
                             registry=D.REGISTRY)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["keras-graph-concat"]["available"] and rows["keras-graph-concat"]["latency_ms"] > 0
    assert rows["keras-graph-concat"]["description"] == D.DIAGNOSTICS["keras-graph-concat"].description


@pytest.mark.slow  # ~35 s on the shared 2-core machine: the subprocess starts JAX and Keras and compiles the step
def test_jax_training_row_beside_the_tensorflow_one(tmp_path):
    """train-jax runs in a KERAS_BACKEND=jax subprocess that imports no TensorFlow (else the row is
    unavailable), with the TF row's model, batch and patch, against the JAX matmul peak of that process."""
    from drn_tf.models.drn import DRN

    config = {"scale": 2, "channels": 8, "growth": 4, "num_blocks": 2, "num_groups": 1}  # small: quick to compile
    DRN(**config).save(tmp_path / "small.keras")
    settings = B.Settings(size=(8, 8), matmul_n=256, train_batch=2, train_patch=12, train_runs=2, train_warmup=1,
                          profile=False)
    result = B.run_benchmark(model_path=tmp_path / "small.keras", variants=("train-graph", "train-jax"),
                             settings=settings)
    rows = {r["name"]: r for r in result["rows"]}
    tf_row, jax_row = rows["train-graph"], rows["train-jax"]
    assert jax_row["available"], jax_row["reason"]
    assert jax_row["kind"] == tf_row["kind"] == "training"
    assert jax_row["note"].startswith("JAX ") and "cpu" in jax_row["note"]
    assert len(jax_row["samples_ms"]) == 2 and jax_row["best_ms"] <= jax_row["latency_ms"]
    flops = result["training_input"]["gflop_per_step"]
    assert flops == pytest.approx(3 * 2 * count_macs(config, 12, 12) * 2 / 1e9)
    for r in (tf_row, jax_row):
        assert r["gflops"] == pytest.approx(flops / (r["latency_ms"] / 1e3))
        assert r["patches_per_s"] == pytest.approx(2 / (r["latency_ms"] / 1e3))
    assert jax_row["peak_gflops"] > 0 and jax_row["peak_gflops_best"] >= jax_row["peak_gflops"]
    assert jax_row["pct_peak"] == pytest.approx(100 * jax_row["gflops"] / jax_row["peak_gflops"])
    assert jax_row["pct_peak_best"] == pytest.approx(100 * jax_row["gflops_best"] / jax_row["peak_gflops_best"])
    assert tf_row["peak_gflops"] is None
    assert tf_row["pct_peak"] == pytest.approx(100 * tf_row["gflops"] / result["peak"]["gflops"])
    assert f"| train-jax | {B.VARIANTS['train-jax'].description}" in B.to_markdown(result)


@pytest.mark.slow
def test_drn_benchmark_quick_reports_every_field(tmp_path):
    js, md = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run(
        [sys.executable, "-m", "drn_tf.cli", "benchmark", "--quick", "--json", str(js), "--markdown", str(md)],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(js.read_text())
    assert md.read_text() == proc.stdout  # the file is what was printed

    m = result["machine"]
    assert m["cores"] == B.cpu_count() and m["cpu_model"]
    assert result["model"]["parameters"] == 1094636  # drn_x2
    bundled = (ROOT / "assets" / "drn_x2.keras").is_file()
    assert result["model"]["trained"] is bundled
    assert ("trained bundled weights" if bundled else "freshly initialised") in result["model"]["source"]
    config = get_preset("drn_x2")["config"]
    h, w = result["input"]["height"], result["input"]["width"]
    assert result["input"]["macs"] == count_macs(config, h, w)
    assert result["model"]["macs_per_output_megapixel"] == pytest.approx(count_macs(config, h, w) / (4 * h * w) * 1e6)
    peak = result["peak"]["gflops"]
    assert peak > 0 and result["peak"]["gflops_best"] >= peak
    assert result["int8_peak"]["gops"] > 0
    assert result["input_pipeline_patches_per_s"] > 0

    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == set(B.ALL_VARIANTS)
    for name, r in rows.items():
        assert r["available"], f"{name}: {r['reason']}"
        for key in ("latency_ms", "best_ms", "gflops", "gflops_best", "pct_peak", "pct_peak_best"):
            assert r[key] is not None and r[key] > 0, (name, key)
        assert r["best_ms"] <= r["latency_ms"]
        assert len(r["samples_ms"]) == (result["settings"]["train_runs"] if r["kind"] == "training"
                                        else result["settings"]["runs"])
        flops = (result["training_input"]["gflop_per_step"] if r["kind"] == "training" else result["input"]["gflop"])
        assert r["gflops"] == pytest.approx(flops / (r["latency_ms"] / 1e3), rel=1e-6)
        # train-jax: against JAX's own matmul peak, measured in its subprocess; the others: the run's peak
        assert (r["peak_gflops"] is not None) == (name == "train-jax")
        assert r["pct_peak"] == pytest.approx(100 * r["gflops"] / (r["peak_gflops"] or peak), rel=1e-6)
        if r["kind"] == "training":
            assert r["patches_per_s"] == pytest.approx(result["training_input"]["batch"] / (r["latency_ms"] / 1e3))
        else:
            assert r["output_mp_per_s"] == pytest.approx(result["input"]["output_megapixels"] / (r["latency_ms"] / 1e3))
        assert f"| {name} |" in proc.stdout
    goals = N.evaluate_goals(rows)
    assert [g["goal"] for g in goals] == ["keras_fp32_pct_peak", "int8_speedup", "train_pct_peak"]
    assert all(isinstance(g["met"], bool) and g["measured"] > 0 for g in goals)
    assert result["profiles"]["inference"]["conv_share_pct"] > 0
    assert result["profiles"]["training"]["conv_share_pct"] > 0
    assert proc.stdout.startswith("## Performance\n\nGenerated by `drn benchmark --quick --json ")
    for heading in ("### Where the time goes", "Measured fp32 peak", "Measured int8 peak"):
        assert heading in proc.stdout
    # the round's goals and notes, put on the JSON by the tool
    notes_md = tmp_path / "notes.md"
    assert N.main([str(js), "-o", str(notes_md)]) == 0
    notes = notes_md.read_text()
    assert notes.startswith(proc.stdout)
    assert f"this run: drn_x2 at {h}x{w} on {m['cores']} cores" in notes
    for heading in ("### Goals", "### Notes", "On the JAX backend (`train-jax`"):
        assert heading in notes


# ---------------------------------------------------------------- drn benchmark --runtimes


def test_auto_verdict_within_tolerance_of_the_fastest_float_runtime():
    from drn_tf.bench.runtime_table import RuntimeRow, auto_verdict

    rows = {n: RuntimeRow(n, "", median_ms=ms) for n, ms in
            (("keras", 100.0), ("litert", 104.0), ("onnxruntime", 120.0), ("litert-int8", 30.0))}
    assert auto_verdict(rows, "keras") == {"fastest": "keras", "ratio": 1.0, "within": True}  # int8 is not a candidate
    assert auto_verdict(rows, "litert")["within"] is True
    assert auto_verdict(rows, "onnxruntime") == {"fastest": "keras", "ratio": 1.2, "within": False}
    assert auto_verdict(rows, "openvino") == {"fastest": "keras", "ratio": None, "within": None}


def test_runtime_table_reports_every_runtime_with_auto(fresh_drn_s, tmp_path, monkeypatch):
    """Fake timings (keras 200 ms, litert 100 ms): x keras, the diffs, auto's verdict and the markdown."""
    from drn_tf.bench import runtime_table as T
    from drn_tf.inference import autoselect as A
    from drn_tf.inference import devices

    monkeypatch.setenv("DRN_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(A.ENV, "measure")
    monkeypatch.setattr(devices, "gpu_visible", lambda devices=None: False)
    model = fresh_drn_s(2)
    tag = A.model_tag(model)
    A.choose(tag, lambda names: {n: (0.1 if n == "keras" else 0.2) for n in names})  # auto's cached pick: keras
    seconds = {"keras": 0.2, "litert": 0.1, "keras-bf16": 0.05}
    result = T.run_runtime_table(model, tag, size=(12, 12), runs=3, warmup=0, cache_dir=tmp_path / "files",
                                 names=("keras", "litert", "keras-bf16"),
                                 timer=lambda fns, runs, warmup: {n: [seconds[n]] * runs for n in fns})
    rows = result["rows"]
    assert rows["keras"]["x_keras"] == 1.0 and rows["litert"]["x_keras"] == pytest.approx(2.0)
    assert rows["keras"]["max_diff_levels"] == 0 and 0 <= rows["litert"]["max_diff_levels"] < 0.5
    assert result["auto"] == {"runtime": "keras", "how": "cached", "note": "", "fastest": "litert",
                              "ratio": pytest.approx(2.0), "within": False}
    assert ("keras-bf16" in rows) != ("keras-bf16" in result["skipped"])  # runs or is refused, per CPU
    text = T.table_markdown(result, "drn_s", "drn benchmark --runtimes")
    assert "| keras (**auto**) | 200 | 200 | 1.00 | 0 |" in text and "| litert | 100 |" in text
    assert "the fastest float runtime is litert; auto's is 100.0 % slower: **not** within 5%" in text
    assert result["cpu_model"] in text and ", ".join(result["cpu_flags"]) in text


def test_drn_benchmark_runtimes_cli_errors(capsys):
    from drn_tf.cli.main import main

    assert main(["benchmark", "--runtimes", "--preset", "drn_x9"]) != 0
    assert "drn_x9" in capsys.readouterr().err
