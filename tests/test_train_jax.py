"""One training engine for TensorFlow and JAX (``drn train`` under ``KERAS_BACKEND``): the same config
trains on both, a checkpoint of one backend resumes on the other with the same weights and step
counter, a JAX run killed with SIGKILL resumes, the JAX path runs with TensorFlow unimportable
(with DataParallel over 2 host devices), and ``--minutes`` fits the run to a wall-clock budget.

Each run is a fresh ``python -c`` process (the backend is chosen at Keras import); tiny drn_s,
patches of 16, Set5 as training data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train_distributed import (
    env,
    kill_then_resume,
    processes,
    wait_ok,
    write_config,
)

pytestmark = pytest.mark.slow

# `drn` with TensorFlow made unimportable (as on the GPU machines): prints TF-FREE at the end when no
# tensorflow module was loaded.
NO_TF = ("import sys; sys.modules['tensorflow'] = None; from drn_tf.cli.main import main; rc = main(sys.argv[1:]); "
         "loaded = [m for m, v in sys.modules.items() if v is not None and m.split('.')[0] == 'tensorflow']; "
         "print('TF-FREE' if not loaded else f'TF-LOADED {loaded[:3]}'); sys.exit(rc)")
DRN = "import sys; from drn_tf.cli.main import main; sys.exit(main(sys.argv[1:]))"

# Trains with the engine, then saves what it holds in memory: every model and optimizer variable by path.
TRAIN_AND_DUMP = r"""
import sys, numpy as np
from drn_tf.train.config import load_config
from drn_tf.train.engine import train
res = train(load_config(sys.argv[1]), sys.argv[2], verbose=2)
m = res.model
np.savez(sys.argv[3], **{v.path.replace("/", "|"): np.asarray(v.numpy()) for v in m.weights + m.optimizer.variables})
print("SUMMARY", __import__("json").dumps({k: res.summary[k] for k in ("backend", "steps", "strategy")}))
"""

# Builds the engine's model + optimizer for the config and loads the run's committed checkpoint into it.
LOAD_AND_DUMP = r"""
import sys, numpy as np
from drn_tf.train.config import load_config, resolve_config
from drn_tf.train.recipe import build_model
from drn_tf.train.rundir import read_state
cfg = resolve_config(load_config(sys.argv[1]))
m = build_model(cfg)
state = read_state(sys.argv[2])
m.load_weights(f"{sys.argv[2]}/checkpoint/{state['weights']}")
np.savez(sys.argv[3], **{v.path.replace("/", "|"): np.asarray(v.numpy()) for v in m.weights + m.optimizer.variables})
"""


def run_python(start, code, args, log, backend, timeout=180, **extra):
    p = start([sys.executable, "-c", code, *map(str, args)], log, env=env(KERAS_BACKEND=backend, **extra))
    wait_ok(p, log, timeout)
    return Path(log).read_text()


def losses(run):
    from drn_tf.train.rundir import read_history

    return [r["loss"] for r in read_history(Path(run) / "history.csv")]


def assert_same_variables(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 10
    assert any(k.endswith("iteration") for k in a.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("first,second", [("tensorflow", "jax"), ("jax", "tensorflow")])
def test_a_checkpoint_resumes_on_the_other_backend(data_dir, tmp_path, first, second):
    """The same config trains 10 steps on `first` (loss falls); the checkpoint loads on `second` with every
    weight and optimizer variable (step counter included) identical to what `first` held; `drn train` then
    continues there to 20 steps from step 10, and the loss keeps falling."""
    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", steps=10)
    run = tmp_path / "run"
    with processes() as start:
        out = run_python(start, TRAIN_AND_DUMP, [cfg, run, tmp_path / "a.npz"], tmp_path / "a.txt", first)
        assert f'"backend": "{first}", "steps": 10' in out
        curve = losses(run)
        assert len(curve) == 2 and curve[1] < curve[0], curve
        run_python(start, LOAD_AND_DUMP, [cfg, run, tmp_path / "b.npz"], tmp_path / "b.txt", second)
        assert_same_variables(tmp_path / "a.npz", tmp_path / "b.npz")

        cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", steps=20)
        log = run_python(start, DRN, ["train", "--config", cfg, "--out", run, "--verbose", "2"], tmp_path / "c.txt",
                         second)
    assert f"resuming {run} from epoch 2 (step 10) of 4 (checkpoint written under {first})" in log
    summary = json.loads((run / "run.json").read_text())
    assert summary["backend"] == second and summary["steps"] == 20 and summary["resumed_from"]["step"] == 10
    curve = losses(run)
    assert len(curve) == 4 and curve[-1] < curve[0], curve


def test_jax_trains_without_tensorflow_on_two_devices(data_dir, tmp_path):
    """TensorFlow unimportable, 2 host devices: DataParallel, the numpy pipeline, no TensorBoard (one line
    says so), the run directory complete, loss falling, and no tensorflow module loaded at the end."""
    from drn_tf.models.drn import load_model
    from drn_tf.train.rundir import read_state

    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", val=["benchmark/Set5"], steps=20)
    run = tmp_path / "run"
    with processes() as start:
        log = run_python(start, NO_TF, ["train", "--config", cfg, "--out", run, "--verbose", "2"], tmp_path / "l.txt",
                         "jax", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert log.rstrip().endswith("TF-FREE"), log[-2000:]
    assert log.count("TensorBoard logs off: TensorFlow is not importable here") == 1
    summary = json.loads((run / "run.json").read_text())
    assert summary["backend"] == "jax" and summary["strategy"] == "DataParallel" and summary["replicas"] == 2
    assert summary["pipeline"] == "numpy" and summary["steps"] == 20 and "tensorflow" not in summary
    assert read_state(run)["step"] == 20 and read_state(run)["backend"] == "jax"
    assert not (run / "tensorboard").exists()
    for name in ("config.yaml", "history.csv", "last.keras", "best.keras", "model.keras"):
        assert (run / name).is_file(), name
    curve = losses(run)
    assert len(curve) == 4 and curve[-1] < 0.8 * curve[0], curve
    load_model(run / "model.keras")


def test_sigkill_then_resume_under_jax_continues_from_the_checkpoint(data_dir, tmp_path):
    """As the TensorFlow test: killed mid-way, started again with the same command, the run ends where an
    uninterrupted one ends (same steps, history and weights)."""
    from drn_tf.models.drn import load_model
    from drn_tf.train.rundir import read_history

    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", val=["benchmark/Set5"], steps=40)

    def command(out):
        return [sys.executable, "-c", DRN, "train", "--config", str(cfg), "--out", str(out), "--verbose", "2"]

    victim = tmp_path / "victim"
    killed = kill_then_resume(command, tmp_path, env(KERAS_BACKEND="jax"))

    k = killed["epoch"]
    assert f"resuming {victim} from epoch {k} (step {5 * k}) of 8" in (tmp_path / "victim2.txt").read_text()
    summary = json.loads((victim / "run.json").read_text())
    assert summary["resumed_from"]["step"] == 5 * k and summary["session_steps"] == 40 - 5 * k
    rows = read_history(victim / "history.csv")
    assert [r["step"] for r in rows] == list(range(5, 45, 5))
    ref_rows = read_history(tmp_path / "ref" / "history.csv")
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref_rows], rtol=1e-5)
    for a, b in zip(load_model(victim / "model.keras").get_weights(),
                    load_model(tmp_path / "ref" / "model.keras").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_minutes_fits_the_step_count_to_the_budget(data_dir, tmp_path):
    """--minutes 1 on JAX: after the 3 calibration epochs the step count is fitted (run.json, state.json,
    config.yaml), the run ends within the budget with model.keras written, the learning rate decays to
    final_ratio x peak by the fitted last step, and the same command again has nothing left to do."""
    import yaml

    from drn_tf.train.rundir import read_history, read_state

    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", steps=100000, epoch_steps=10)
    run = tmp_path / "run"
    args = ["train", "--config", cfg, "--out", run, "--verbose", "2", "--minutes", "1",
            "--set", "schedule.name=cosine", "--set", "schedule.warmup_steps=5"]
    with processes() as start:
        log = run_python(start, DRN, args, tmp_path / "l.txt", "jax")
        summary = json.loads((run / "run.json").read_text())
        planned = summary["planned_steps"]
        assert "--minutes 1: " in log and f"-> {planned} steps" in log
        assert planned % 10 == 0 and 30 < planned < 100000  # fitted beyond the 3 calibration epochs
        assert read_state(run)["planned_steps"] == planned
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == planned
        assert summary["steps"] <= planned and (run / "model.keras").is_file()
        assert summary["wall_s"] < 60 + 10
        rows = read_history(run / "history.csv")
        peak = max(r["lr"] for r in rows)  # warmed up to the peak, then decaying
        assert peak == pytest.approx(2e-3, rel=1e-3) and rows[-1]["lr"] < 0.9 * peak
        if summary["steps"] == planned:
            assert rows[-1]["lr"] == pytest.approx(2e-3 * 0.01, rel=1e-3)  # the schedule ran to its end
            again = run_python(start, DRN, args, tmp_path / "l2.txt", "jax")
            assert "nothing to do" in again
        else:  # a loaded machine slowed down after the calibration: the deadline stopped the run, and says so
            assert f"stopped after epoch {summary['steps'] // 10} of {planned // 10}" in log



def test_jax_device_pipeline_trains_without_tensorflow(data_dir, tmp_path):
    """``data.pipeline: device`` (the training set on the accelerator, patches cut there): trains under JAX
    with TensorFlow unimportable, on 2 host devices (DataParallel), loss falling, the run summary naming it;
    on TensorFlow it is a one-line config error."""
    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", steps=20)
    run = tmp_path / "run"
    with processes() as start:
        log = run_python(start, NO_TF, ["train", "--config", cfg, "--out", run, "--verbose", "2", "--set",
                                        "data.pipeline=device"], tmp_path / "l.txt", "jax",
                         XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert log.rstrip().endswith("TF-FREE"), log[-2000:]
    assert "[data] training set on the device:" in log
    summary = json.loads((run / "run.json").read_text())
    assert summary["pipeline"] == "device" and summary["replicas"] == 2 and summary["steps"] == 20
    curve = losses(run)
    assert len(curve) == 4 and curve[-1] < 0.8 * curve[0], curve

    from drn_tf.train.config import ConfigError, load_config
    from drn_tf.train.engine import train

    with pytest.raises(ConfigError, match="data.pipeline device needs the JAX backend"):
        train(load_config(cfg, sets=["data.pipeline=device"]), tmp_path / "tf-run")
