"""``training/gpu_session.sh`` end to end on this CPU: the one command a timed GPU training run executes, with
the documented CPU settings (JAX, a 1-minute budget, tiny batches) and the sweep first (batch x patch, then
the input pipelines). It must write what it promises under ``RESULTS_DIR`` (the folder the results are
written to): the models, the history, the config, the log and a ``run.json`` with the training FLOP rate
beside a matmul rate measured in the same run."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from paths import DATA, ROOT  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "benchmark" / "Set14").is_dir(), reason="needs ../shared/data")
def test_gpu_session_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, SKIP_PIP="1", DATA=str(DATA), TRAIN="benchmark/Set14", VAL="benchmark/Set5", BATCH="4",
               PATCH="24", EPOCH_STEPS="10", WORKERS="0", MP="false", RESULTS_DIR=str(out),
               KERAS_HOME=str(tmp_path / "kh"),
               PYTHONPATH=str(ROOT), CODE=str(ROOT), SWEEP="1", BATCHES="2,4", PATCHES="16,24", SWEEP_SECONDS="120",
               PIPELINE_STEPS="10")
    # MINUTES 5, but the time budget is 150 s: after the sweep the training gets what is left less the reserve
    env.update(BUDGET_SECONDS="150", RESERVE_SECONDS="45")
    proc = subprocess.run(["bash", "training/gpu_session.sh", "drn_s_x2", "5"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    log = (out / "session.log").read_text() if (out / "session.log").exists() else ""
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + log[-3000:]
    for name in ("model.keras", "best.keras", "last.keras", "history.csv", "run.json", "config.yaml", "session.log",
                 "sweep.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    run = json.loads((out / "run.json").read_text())
    fitted = re.search(r"^budget: training for ([0-9.]+) minutes, not 5 ", proc.stdout, re.M)
    assert fitted, proc.stdout[-3000:]
    assert 0.5 <= float(fitted.group(1)) < 5 and run["minutes"] == pytest.approx(float(fitted.group(1)))
    assert run["backend"] == "jax" and run["steps"] > 0
    assert run["train_tflops"] > 0 and run["matmul_peak"]["tflops"] > 0 and run["matmul_peak"]["dtype"] == "float32"
    assert run["train_percent_of_peak"] == pytest.approx(100 * run["train_tflops"] / run["matmul_peak"]["tflops"], abs=0.1)
    # SWEEP=1: the step time of each batch x patch was measured first, and the run trained with the fastest
    sweep = json.loads((out / "sweep.json").read_text())
    measured = [r for r in sweep["rows"] if "error" not in r]
    assert sorted((r["batch"], r["patch"]) for r in measured) == [(2, 16), (2, 24), (4, 16), (4, 24)]
    assert all(r["train_tflops"] > 0 and r["percent_of_peak"] > 0 for r in measured)
    best = max(measured, key=lambda r: r["train_tflops"])
    assert (run["batch_size"], run["patch_size"]) == (best["batch"], best["patch"])
    # then both input pipelines at that batch and patch, on the training set; the run used the faster
    piped = {r["pipeline"]: r for r in sweep["pipelines"]}
    assert sorted(piped) == ["device", "numpy"] and not any("error" in r for r in piped.values()), piped
    assert all((r["batch"], r["patch"]) == (best["batch"], best["patch"]) and r["patches_per_s"] > 0
               for r in piped.values())
    assert run["pipeline"] == max(piped.values(), key=lambda r: r["patches_per_s"])["pipeline"]
    rows = (out / "history.csv").read_text().strip().splitlines()
    assert len(rows) >= 2 and "val_Set5_psnr" in rows[0]
    from drn_tf.models.drn import load_model

    m = load_model(out / "model.keras")
    assert m.get_config()["scale"] == 2
