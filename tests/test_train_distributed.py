"""Training in other processes: MirroredStrategy over 2 logical CPUs, 2 workers under
MultiWorkerMirroredStrategy on localhost, and a run killed with SIGKILL then resumed.

Each runs fresh Python processes (logical devices and collective ops must be set up
before TensorFlow initialises) and cleans them up whatever happens: own process
groups killed in ``finally``, timeouts on every wait, ports picked free at run time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from paths import ROOT  # noqa: E402
DRN = "import sys; from drn_tf.cli.main import main; sys.exit(main())"  # the `drn` console script

# Runs the trainer, then reports what only this process can see: the per-replica copies
# of every variable and the final weights.
DRIVER = r"""
import json, sys
import numpy as np
from drn_tf.train.config import load_config
from drn_tf.train.engine import train

cfg_path, out, result, cpu_replicas = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
res = train(load_config(cfg_path), out, verbose=2, cpu_replicas=cpu_replicas)
model = res.model
copies, diff = [], 0.0
for v in list(model.weights) + list(model.optimizer.variables):
    inner = getattr(v, "value", v)
    parts = getattr(inner, "values", None) or (inner,)
    arrays = [np.asarray(p.numpy()) for p in parts]
    copies.append(len(arrays))
    diff = max([diff] + [float(np.max(np.abs(a - arrays[0]))) if a.size else 0.0 for a in arrays])
np.savez(result + ".npz", *[np.asarray(v.numpy()) for v in model.weights])
summary = {k: res.summary[k] for k in ("strategy", "replicas", "loop", "steps")}
summary.update(min_copies=min(copies), max_replica_diff=diff)
with open(result + ".json", "w") as fh:
    json.dump(summary, fh)
"""


def write_config(path, data_dir, cache_dir, val=(), **train):
    cfg = {
        "model": {"preset": "drn_s_x2", "overrides": {"channels": 16, "num_groups": 1, "num_blocks": 2}},
        "data": {"root": str(data_dir), "train": ["benchmark/Set5"], "val": list(val), "patch_size": 16,
                 "cache_dir": str(cache_dir)},
        "train": {"batch_size": 4, "steps": 20, "epoch_steps": 5, "seed": 1, **train},
        "optimizer": {"learning_rate": 2e-3},
        "schedule": {"name": "constant"},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def env(**extra):
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **extra)
    e.pop("TF_CONFIG", None)
    e.update(extra)
    return e


@contextmanager
def processes():
    """Popen factory whose processes (own sessions) are all killed with their children on exit."""
    started = []

    def start(args, log, **kw):
        fh = open(log, "w")
        p = subprocess.Popen(args, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        started.append((p, fh))
        return p

    try:
        yield start
    finally:
        for p, fh in started:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            fh.close()


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("localhost", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_ok(p, log, timeout):
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout} s; log:\n{Path(log).read_text()[-3000:]}")
    assert rc == 0, f"exit status {rc}; log:\n{Path(log).read_text()[-3000:]}"


def losses(run_dir):
    from drn_tf.train.rundir import read_history

    return [r["loss"] for r in read_history(Path(run_dir) / "history.csv")]


def kill_then_resume(command, tmp_path, process_env):
    """Starts an uninterrupted reference run (``tmp_path/ref``) and a victim (``tmp_path/victim``) of
    ``command(out)``; kills the victim with SIGKILL once it has committed epoch 2, checks it left no final
    model, starts it again and waits for both. Returns the checkpoint state the kill left."""
    from drn_tf.train.rundir import read_state

    victim = tmp_path / "victim"
    with processes() as start:
        ref = start(command(tmp_path / "ref"), tmp_path / "ref.txt", env=process_env)
        p = start(command(victim), tmp_path / "victim1.txt", env=process_env)
        deadline = time.monotonic() + 180
        while True:
            state = read_state(victim)
            if state and state["epoch"] >= 2:
                os.killpg(p.pid, signal.SIGKILL)
                break
            assert p.poll() is None, (tmp_path / "victim1.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
        p.wait(timeout=30)
        assert p.returncode == -signal.SIGKILL
        killed = read_state(victim)
        assert 2 <= killed["epoch"] < 8, killed
        assert not (victim / "model.keras").exists()

        p2 = start(command(victim), tmp_path / "victim2.txt", env=process_env)
        wait_ok(p2, tmp_path / "victim2.txt", timeout=240)
        wait_ok(ref, tmp_path / "ref.txt", timeout=240)
    return killed


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(data_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache")
    with processes() as start:
        log = tmp_path / "log.txt"
        p = start([sys.executable, "-c", DRIVER, str(cfg), str(tmp_path / "run"), str(tmp_path / "r"), "2"], log,
                  env=env())
        wait_ok(p, log, timeout=240)
    info = json.loads((tmp_path / "r.json").read_text())
    assert info["strategy"] == "MirroredStrategy" and info["replicas"] == 2 and info["loop"] == "model.fit"
    assert info["steps"] == 20
    assert info["min_copies"] == 2  # every weight and optimizer slot has a copy per replica ...
    assert info["max_replica_diff"] == 0.0  # ... and the copies are identical
    curve = losses(tmp_path / "run")
    assert len(curve) == 4 and curve[-1] < 0.8 * curve[0], curve


@pytest.mark.slow
def test_two_workers_multi_worker_mirrored(data_dir, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache")
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    run = tmp_path / "run"
    with processes() as start:
        procs = []
        for i in range(2):
            tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
            log = tmp_path / f"worker{i}.txt"
            procs.append((start([sys.executable, "-c", DRIVER, str(cfg), str(run), str(tmp_path / f"w{i}"), "0"],
                                log, env=env(TF_CONFIG=tf_config)), log))
        for p, log in procs:
            wait_ok(p, log, timeout=300)
    infos = [json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2)]
    for info in infos:
        assert info["strategy"] == "MultiWorkerMirroredStrategy" and info["replicas"] == 2
        assert info["loop"] == "strategy.run" and info["steps"] == 20
    w0, w1 = (np.load(tmp_path / f"w{i}.npz") for i in range(2))
    assert len(w0.files) == len(w1.files) > 0
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])  # both workers end with the same weights
    from drn_tf.models.drn import load_model

    saved = load_model(run / "model.keras").get_weights()  # written by the chief only
    for k, a in zip(w0.files, saved):
        np.testing.assert_array_equal(w0[k], a)
    assert not list(run.glob("worker*")), "only the chief writes into the run directory"
    curve = losses(run)
    assert len(curve) == 4 and curve[-1] < 0.8 * curve[0], curve


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_the_checkpoint(data_dir, tmp_path):
    """A run killed mid-way and started again with the same command ends bitwise where an
    uninterrupted run ends (op determinism on): same step counter, same weights, one history."""
    from drn_tf.models.drn import load_model
    from drn_tf.train.rundir import read_history, read_state

    cfg = write_config(tmp_path / "c.yaml", data_dir, tmp_path / "cache", val=["benchmark/Set5"], steps=40,
                       deterministic=True)

    def command(out):
        return [sys.executable, "-c", DRN, "train", "--config", str(cfg), "--out", str(out), "--verbose", "2"]

    victim = tmp_path / "victim"
    killed = kill_then_resume(command, tmp_path, env())

    log = (tmp_path / "victim2.txt").read_text()
    k = killed["epoch"]
    assert f"resuming {victim} from epoch {k} (step {5 * k}) of 8" in log
    summary = json.loads((victim / "run.json").read_text())
    assert summary["resumed_from"]["step"] == 5 * k and summary["session_steps"] == 40 - 5 * k
    assert read_state(victim)["step"] == 40
    rows = read_history(victim / "history.csv")
    assert [r["epoch"] for r in rows] == list(range(1, 9)) and [r["step"] for r in rows] == list(range(5, 45, 5))
    ref_rows = read_history(tmp_path / "ref" / "history.csv")
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref_rows], rtol=1e-6)
    np.testing.assert_array_equal([r["val_psnr"] for r in rows], [r["val_psnr"] for r in ref_rows])
    for name in ("model.keras", "best.keras"):  # best.keras: the best of the committed epochs
        a = load_model(victim / name).get_weights()
        b = load_model(tmp_path / "ref" / name).get_weights()
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert read_state(victim)["best_epoch"] == read_state(tmp_path / "ref")["best_epoch"]
    assert [p.name for p in (victim / "checkpoint").glob("best-*.keras")] == [read_state(victim)["best_file"]]
