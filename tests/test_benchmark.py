"""``drn benchmark`` (drn_tf.bench.benchmark, drn_tf/cli/commands/benchmark.py).

No timed assertions (the machine is shared and noisy): the tests check that
every variant is measured and every field reported, that the derived figures
are consistent with each other (GFLOP/s from the MACs and the latency, % of
the peak from the peak), and that a variant that cannot be built is reported
as unavailable with its reason instead of failing the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from drn_tf.bench import benchmark as B  # noqa: E402
from drn_tf.models.analysis import count_macs  # noqa: E402
from drn_tf.models.presets import get_preset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- pure functions


def test_parse_variants_groups_and_errors():
    from drn_tf.cli.base import UserError
    from drn_tf.cli.commands.benchmark import parse_variants

    assert parse_variants(None) == B.ALL_VARIANTS
    assert parse_variants("train") == (
        "train-graph", "train-graph-concat", "train-bf16", "train-xla", "train-pipeline"
    )
    assert parse_variants("tflite-int8,keras") == (
        "keras-eager", "keras-graph", "keras-graph-concat", "keras-xla", "tflite-int8"
    )
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
    r = B.Row(name, B.DESCRIPTIONS[name], B._kind(name))
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
    goals = {g["goal"]: g for g in B.evaluate_goals(rows)}
    k = goals["keras_fp32_pct_peak"]
    assert k["variant"] == "keras-xla" and k["measured"] == pytest.approx(100 / 1.2) and k["met"] is True
    i = goals["int8_speedup"]
    assert i["measured"] == pytest.approx(2.5) and i["met"] is False
    assert i["measured_best"] == pytest.approx(2.5)
    t = goals["train_pct_peak"]
    assert t["measured"] == pytest.approx(125.0) and t["met"] is True
    # nothing measured -> not measured, never "met"
    none = {g["goal"]: g for g in B.evaluate_goals({})}
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
        "goals": B.evaluate_goals(rows),
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
    missing = B.Row("tflite-float16", B.DESCRIPTIONS["tflite-float16"], "inference", available=False,
                    reason="RuntimeError: drn_tf.export.tflite has no TFLite conversion")
    rows["tflite-float16"] = missing
    profiles = {
        "inference": B.summarise_profile({"_MklNativeFusedConv2D": 900.0, "Pad": 60.0, "AddV2": 40.0,
                                          "__wall__": 1000.0}, flops),
        "training": None,
    }
    result = _fake_result(rows, profiles)
    notes = B.explain(result)
    assert set(notes) == {"Keras fp32 inference", "TFLite int8 speed-up", "Training"}
    assert "**not met**" in notes["TFLite int8 speed-up"] and "met." in notes["Keras fp32 inference"]
    # the comparisons are computed from the rows: concat form 10 % slower, XLA 20 % slower
    assert "+10.0% throughput on the medians" in notes["Keras fp32 inference"]
    assert "stays in graph mode" in notes["Keras fp32 inference"]
    assert "90% of the op time" in notes["Keras fp32 inference"]
    assert "`train-graph-concat`): -50.0% throughput on the medians" in notes["Training"]
    assert "(`train-bf16`, not counted in the goal): +300.0% throughput" in notes["Training"]
    assert {g["goal"]: g["variant"] for g in result["goals"]}["train_pct_peak"] == "train-graph"
    text = B.to_markdown(result, notes)
    for r in rows.values():
        assert f"| {r.name} |" in text
    assert "unavailable: RuntimeError: drn_tf.export.tflite has no TFLite conversion" in text
    assert "**2 cores**" in text and "Test CPU" in text
    assert "| inference | 1000.0 |" in text and "profile unavailable" in text
    assert text.count("**not met**") == 1 and "| **no** |" in text
    assert "The goals are stated for" not in text  # drn_x2, 256x256, 2 cores: the goals' own conditions


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


def test_conv_chain_has_the_models_convolutions():
    from drn_tf.models.drn import DRN

    model = DRN.from_preset("drn_s_x3", load_weights=False)
    chain = B.conv_chain_model(model)
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
    goals = {g["goal"]: g for g in result["goals"]}
    assert goals["int8_speedup"]["met"] is None and goals["train_pct_peak"]["met"] is None
    assert "unavailable: ExportError: conversion exploded" in B.to_markdown(result, B.explain(result))


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
        assert r["pct_peak"] == pytest.approx(100 * r["gflops"] / peak, rel=1e-6)
        if r["kind"] == "training":
            assert r["patches_per_s"] == pytest.approx(result["training_input"]["batch"] / (r["latency_ms"] / 1e3))
        else:
            assert r["output_mp_per_s"] == pytest.approx(result["input"]["output_megapixels"] / (r["latency_ms"] / 1e3))
        assert f"| {name} |" in proc.stdout
    goals = result["goals"]
    assert [g["goal"] for g in goals] == ["keras_fp32_pct_peak", "int8_speedup", "train_pct_peak"]
    assert all(isinstance(g["met"], bool) and g["measured"] > 0 for g in goals)
    assert result["profiles"]["inference"]["conv_share_pct"] > 0
    assert result["profiles"]["training"]["conv_share_pct"] > 0
    assert proc.stdout.startswith("## Performance\n\nGenerated by `drn benchmark --quick --json ")
    assert f"this run: drn_x2 at {h}x{w} on {m['cores']} cores" in proc.stdout
    for heading in ("### Goals", "### Where the time goes", "### Notes", "Measured fp32 peak", "Measured int8 peak"):
        assert heading in proc.stdout
