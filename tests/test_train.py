"""``drn_tf.train.engine`` in this process (one device): outputs of a run, the strategy.run loop
against model.fit, --init-from, EMA weights. Tiny models, Set5 as training data."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from drn_tf.models.drn import load_model  # noqa: E402
from drn_tf.train import state  # noqa: E402
from drn_tf.train.config import ConfigError, load_config, resolve_config  # noqa: E402
from drn_tf.train.engine import train  # noqa: E402
from drn_tf.train.recipe import build_model  # noqa: E402
from drn_tf.train.rundir import read_history, read_state  # noqa: E402
from drn_tf.train.warmstart import average_models, init_from  # noqa: E402

TINY_OVERRIDES = {"channels": 16, "num_groups": 1, "num_blocks": 2}


def tiny_config(data_dir, cache_dir, **sections):
    cfg = {
        "model": {"preset": "drn_s_x2", "overrides": dict(TINY_OVERRIDES)},
        "data": {"root": str(data_dir), "train": ["benchmark/Set5"], "val": [], "patch_size": 16,
                 "cache_dir": str(cache_dir)},
        "train": {"batch_size": 4, "steps": 10, "epoch_steps": 5, "seed": 1},
        "optimizer": {"learning_rate": 2e-3},
        "schedule": {"name": "constant"},
    }
    for sec, keys in sections.items():
        cfg[sec].update(keys)
    return load_config(overrides=cfg)


@pytest.fixture(scope="module")
def fit_run(data_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    cfg = tiny_config(data_dir, base / "cache", data={"val": ["benchmark/Set5"]})
    res = train(cfg, base / "run", verbose=0, quiet=True)
    return cfg, res


def test_run_directory_holds_config_history_checkpoint_and_models(fit_run):
    cfg, res = fit_run
    run = res.run_dir
    assert res.summary["strategy"] == "default" and res.summary["loop"] == "model.fit"
    assert res.summary["steps"] == 10 and res.summary["patches_seen"] == 40
    assert res.summary["patches_per_s"] > 0
    saved = resolve_config(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert saved["model"] == resolve_config(cfg)["model"]

    rows = read_history(run / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [5, 10]
    assert all(np.isfinite(r["val_Set5_psnr"]) and r["val_psnr"] == r["val_Set5_psnr"] for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert abs(res.summary["val_sets"]["Set5"]["bicubic_psnr"] - 33.66) < 0.05

    state = read_state(run)
    assert state["epoch"] == 2 and state["step"] == 10
    assert (run / "checkpoint" / state["weights"]).is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))

    # model.keras: the trained weights, loadable with safe_mode=True, float32
    final = load_model(run / "model.keras")
    for a, b in zip(final.get_weights(), res.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert final.dtype_policy.name == "float32"
    last = load_model(run / "last.keras")
    for a, b in zip(last.get_weights(), res.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_best_model_has_the_best_logged_psnr(fit_run, set5):
    """best.keras re-evaluated with the shared protocol code gives the best PSNR of the history."""
    from drn_tf.data.patches import load_pairs
    from drn_tf.train.callbacks import evaluate_pairs

    _, res = fit_run
    rows = read_history(res.run_dir / "history.csv")
    best_logged = max(r["val_Set5_psnr"] for r in rows)
    lrs, hrs, _ = load_pairs([set5], 2, cache_dir=False)
    psnr, _ = evaluate_pairs(load_model(res.run_dir / "best.keras"), lrs, hrs, 2)
    assert psnr == pytest.approx(best_logged, abs=1e-3)
    assert res.summary["best_val_psnr"] == pytest.approx(best_logged)


def test_finished_run_is_not_trained_again(fit_run):
    cfg, res = fit_run
    again = train(cfg, res.run_dir, verbose=0, quiet=True)
    assert again.resumed_from["step"] == 10
    assert len(read_history(res.run_dir / "history.csv")) == 2
    for a, b in zip(again.model.get_weights(), res.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_a_different_model(fit_run):
    cfg, res = fit_run
    other = copy.deepcopy(cfg)
    other["model"]["overrides"]["channels"] = 8
    with pytest.raises(ConfigError, match="different run"):
        train(other, res.run_dir, verbose=0, quiet=True)


def test_strategy_run_loop_matches_model_fit(fit_run, data_dir, tmp_path):
    """The loop used under MultiWorkerMirroredStrategy gives model.fit's result on one device."""
    cfg, res = fit_run
    custom = copy.deepcopy(cfg)
    custom["train"]["loop"] = "custom"
    custom["data"]["val"] = []
    out = train(custom, tmp_path / "custom", verbose=0, quiet=True)
    assert out.summary["loop"] == "strategy.run"
    fit_rows = read_history(res.run_dir / "history.csv")
    rows = read_history(tmp_path / "custom" / "history.csv")
    assert [r["step"] for r in rows] == [5, 10]
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in fit_rows], rtol=1e-4)
    for a, b in zip(out.model.get_weights(), res.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_init_from_copies_matching_layers_but_not_the_upsampler(fresh_drn_s, fit_run, tmp_path):
    _, res = fit_run
    src = load_model(res.run_dir / "model.keras")
    keras.utils.set_random_seed(5)
    x3 = fresh_drn_s(3, **TINY_OVERRIDES)
    before = {layer.name: layer.get_weights() for layer in x3.layers}
    report = init_from(x3, res.run_dir)  # a run directory: its model.keras
    assert report["skipped"] == ["upsampler"]
    assert set(report["loaded"]) == {"lfe", "rdg_0", "body_end"}
    for name in report["loaded"]:
        for a, b in zip(x3.get_layer(name).get_weights(), src.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(x3.get_layer("upsampler").get_weights(), before["upsampler"]):
        np.testing.assert_array_equal(a, b)

    # a .weights.h5 file: only what the file holds is copied
    h5 = tmp_path / "x2.weights.h5"
    src.save_weights(h5)
    x3b = fresh_drn_s(3, **TINY_OVERRIDES)
    report = init_from(x3b, h5)
    assert report["skipped"] == ["upsampler"] and "rdg_0" in report["loaded"]
    np.testing.assert_array_equal(x3b.get_layer("lfe").get_weights()[0], src.get_layer("lfe").get_weights()[0])

    # same scale: the upsampler comes too
    x2 = fresh_drn_s(2, **TINY_OVERRIDES)
    assert "upsampler" in init_from(x2, res.run_dir / "model.keras")["loaded"]
    with pytest.raises(FileNotFoundError):
        init_from(x2, tmp_path / "missing.keras")


def test_init_from_in_a_run(fit_run, data_dir, tmp_path):
    cfg, res = fit_run
    x3 = copy.deepcopy(cfg)
    x3["model"].update(preset="drn_s_x3", init_from=str(res.run_dir / "model.keras"))
    x3["data"]["val"] = []
    x3["train"]["steps"] = 1
    x3["train"]["epoch_steps"] = 1
    out = train(x3, tmp_path / "x3", verbose=0, quiet=True)
    assert out.model.scale == 3 and out.summary["steps"] == 1
    # one Adam step from the x2 weights: the copied layers moved little, far less than their size
    src = load_model(res.run_dir / "model.keras").get_layer("rdg_0").get_weights()[0]
    got = out.model.get_layer("rdg_0").get_weights()[0]
    assert np.abs(got - src).max() < 0.01 < np.abs(src).max()


def test_average_models_over_the_engine_files(fresh_drn_s, fit_run, tmp_path):
    """A run directory averages its kept checkpoints (weights of epochs 1 and 2, read through the run's
    config); .keras files average as themselves; other architectures are refused."""
    _, res = fit_run
    run = res.run_dir
    cfg = resolve_config(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    per_epoch = []
    for f in sorted((run / "checkpoint").glob("ckpt-*.weights.h5")):
        m = build_model(cfg)
        m.load_weights(f)
        per_epoch.append(m.get_weights())
    assert len(per_epoch) == 2 and not np.array_equal(per_epoch[0][0], per_epoch[1][0])
    files = average_models([run], tmp_path / "avg.keras")
    assert [f.name for f in files] == ["ckpt-000001.weights.h5", "ckpt-000002.weights.h5"]
    avg = load_model(tmp_path / "avg.keras")
    assert avg.dtype_policy.name == "float32"
    for got, a, b in zip(avg.get_weights(), *per_epoch):
        np.testing.assert_allclose(got, (a.astype(np.float64) + b) / 2, rtol=1e-6, atol=1e-7)

    average_models([run / "last.keras", run / "model.keras"], tmp_path / "same.keras")
    for got, want in zip(load_model(tmp_path / "same.keras").get_weights(), res.model.get_weights()):
        np.testing.assert_array_equal(got, want)

    other = fresh_drn_s(2, **dict(TINY_OVERRIDES, channels=8))
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="not the architecture of"):
        average_models([run / "last.keras", tmp_path / "other.keras"], tmp_path / "bad.keras")
    assert not (tmp_path / "bad.keras").exists()


def test_numpy_pipeline_trains_on_the_tf_data_batches_also_after_a_resume(data_dir, tmp_path):
    """data.pipeline numpy (what JAX trains on) = tf.data, from any step: a tf.data run resumed at step 10 with
    the numpy pipeline ends with the weights of a tf.data run straight to 20. (Keras ends an epoch of a
    PyDataset after peeking at it, which shifted the numpy stream by an epoch.)"""
    straight = train(tiny_config(data_dir, tmp_path / "cache", train={"steps": 20}), tmp_path / "a", verbose=0,
                     quiet=True)
    train(tiny_config(data_dir, tmp_path / "cache"), tmp_path / "b", verbose=0, quiet=True)
    resumed = train(tiny_config(data_dir, tmp_path / "cache", train={"steps": 20}, data={"pipeline": "numpy"}),
                    tmp_path / "b", verbose=0, quiet=True)
    assert resumed.summary["pipeline"] == "numpy" and resumed.resumed_from["step"] == 10
    np.testing.assert_allclose([r["loss"] for r in read_history(tmp_path / "b" / "history.csv")],
                               [r["loss"] for r in read_history(tmp_path / "a" / "history.csv")], rtol=1e-5)
    for a, b in zip(resumed.model.get_weights(), straight.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sampler_stream_is_the_global_batch_sequence_with_and_without_threads(set5):
    import itertools

    from drn_tf.data.patches import PatchSampler, load_pairs

    lrs, hrs, _ = load_pairs([set5], 2, cache_dir=False, min_lr_size=16)
    sampler = PatchSampler(lrs, hrs, 2, patch_size=16, batch_size=3, steps_per_epoch=4, seed=2)
    want = [sampler.batch(g % 4, epoch=g // 4) for g in range(6, 15)]
    for workers in (0, 3):
        got = list(itertools.islice(sampler.stream(6, workers=workers), 9))
        for (lr, hr), (wlr, whr) in zip(got, want):
            np.testing.assert_array_equal(lr, wlr)
            np.testing.assert_array_equal(hr, whr)


def test_weight_values_are_the_ema_when_the_optimizer_keeps_one(fresh_drn_s):
    keras.utils.set_random_seed(0)
    model = fresh_drn_s(2, **TINY_OVERRIDES)
    model.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.5), loss="mae")
    rng = np.random.default_rng(0)
    x = rng.random((2, 8, 8, 3), dtype=np.float32)
    y = rng.random((2, 16, 16, 3), dtype=np.float32)
    for _ in range(3):
        model.train_on_batch(x, y)
    raw = model.get_weights()
    ema = state.weight_values(model)
    averages = {id(v): a.numpy() for v, a in zip(model.trainable_variables,
                                                 model.optimizer._model_variables_moving_average)}
    differs = 0
    for v, r, e in zip(model.weights, raw, ema):
        if id(v) in averages:
            np.testing.assert_array_equal(e, averages[id(v)])
            differs += not np.array_equal(e, r)
        else:
            np.testing.assert_array_equal(e, r)
    assert differs > 0
    assert all(np.array_equal(a, b) for a, b in zip(state.weight_values(model, use_ema=False), raw))


def test_summary_is_json(fit_run):
    _, res = fit_run
    data = json.loads((res.run_dir / "run.json").read_text())
    assert data["steps"] == 10 and data["replicas"] == 1 and "tensorflow" in data


def test_mixed_precision_run_saves_a_float32_model(data_dir, tmp_path):
    cfg = tiny_config(data_dir, tmp_path / "cache", train={"steps": 2, "epoch_steps": 2,
                                                           "mixed_precision": "mixed_bfloat16"})
    res = train(cfg, tmp_path / "run", verbose=0, quiet=True)
    assert res.summary["dtype_policy"] == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    saved = load_model(tmp_path / "run" / "model.keras")
    assert saved.dtype_policy.name == "float32"
    assert all(w.dtype == np.float32 for w in saved.get_weights())
    for a, b in zip(saved.get_weights(), res.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_training_validation_matches_drn_evaluate_on_grey_and_rgb(fresh_drn_s, tmp_path, set14):
    """train.evaluate_pairs on data.validation_pairs == drn_tf.inference.evaluation (grey kept single-channel)."""
    from PIL import Image

    from drn_tf.core.protocol import validation_pairs
    from drn_tf.inference.evaluation import evaluate_folder
    from drn_tf.train.callbacks import evaluate_pairs

    Image.open(set14 / "bridge.png").crop((0, 0, 40, 36)).save(tmp_path / "grey.png")
    Image.open(set14 / "baboon.png").convert("RGB").crop((0, 0, 38, 40)).save(tmp_path / "rgb.png")
    lrs, hrs, names = validation_pairs([tmp_path], 2)
    assert sorted(h.shape[-1] for h in hrs) == [1, 3]
    model = fresh_drn_s(2)
    psnr, ssim = evaluate_pairs(model, lrs, hrs, 2)
    ref = evaluate_folder(tmp_path, 2, model)
    assert psnr == pytest.approx(ref.psnr, abs=1e-9)
    assert ssim == pytest.approx(ref.ssim, abs=1e-9)


# ------------------------------------------------------------------ full disks, temporary files


def _temp_files(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if ".tmp" in p.name)


def test_a_full_disk_mid_checkpoint_is_an_error_that_keeps_the_committed_checkpoint(data_dir, tmp_path,
                                                                                    monkeypatch):
    """The disk fills while epoch 2's checkpoint is written: a DiskSpaceError saying how much is free and
    needed, no temporary file left, state.json still at epoch 1; a rerun on the still-full disk stops
    before training; with space again the run resumes from epoch 1."""
    import os

    import drn_tf.core.utils

    cfg = tiny_config(data_dir, tmp_path / "cache", train={"steps": 5})
    run = tmp_path / "run"
    train(cfg, run, verbose=0, quiet=True)
    assert read_state(run)["epoch"] == 1
    committed = (run / "checkpoint" / "state.json").read_text()

    real_fsync = os.fsync

    def fsync(fd):  # the disk is full once the new checkpoint's bytes are being flushed
        if "ckpt-000002" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(drn_tf.core.utils.os, "fsync", fsync)
    cfg["train"]["steps"] = 10
    with pytest.raises(state.DiskSpaceError, match=r"ckpt-000002\.weights\.h5: no space left on device while "
                       r"writing the checkpoint; [\d.]+ MB free, a checkpoint needs ~[\d.]+ MB"):
        train(cfg, run, verbose=0, quiet=True)
    assert _temp_files(run) == []
    assert (run / "checkpoint" / "state.json").read_text() == committed
    monkeypatch.undo()

    # still full: refused before an epoch's work is spent
    monkeypatch.setattr(state, "free_bytes", lambda path: 300_000)
    calls = []
    monkeypatch.setattr(keras.Model, "train_step", lambda self, data: calls.append(1))
    with pytest.raises(state.DiskSpaceError, match=r"no space left on device for the checkpoint; 0\.3 MB free, "
                       r"a checkpoint needs ~[\d.]+ MB"):
        train(cfg, run, verbose=0, quiet=True)
    assert calls == [] and len(read_history(run / "history.csv")) == 1
    monkeypatch.undo()

    res = train(cfg, run, verbose=0, quiet=True)
    assert res.resumed_from["epoch"] == 1 and read_state(run)["epoch"] == 2 and _temp_files(run) == []


def _dead_pid():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_temporary_files_of_killed_runs_are_removed_at_start_and_nothing_else(data_dir, tmp_path):
    import os

    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    dead, alive = _dead_pid(), os.getppid()
    stale = [f".last.tmp{dead}.keras", f".model.tmp{dead}.keras", f".last.keras.tmp{dead}", f".best.keras.tmp{dead}",
             f".run.json.tmp{dead}", f".config.yaml.tmp{dead}", ".history.tmp", f"checkpoint/.best-000003.tmp{dead}.keras",
             f"checkpoint/.state.json.tmp{dead}", f"checkpoint/.tmp{dead}-ckpt-000002.weights.h5",
             f"checkpoint/.ckpt-000002.weights.h5.tmp{dead}"]
    kept = ["notes.tmp", "mine.keras", ".last.tmp.keras.bak", "checkpoint/README", f"checkpoint/.state.json.tmp{alive}",
            f"checkpoint/.state.json.tmp{dead}.mine", "sub/.last.keras.tmp1"]
    for name in stale + kept:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x" * 100)
    res = train(tiny_config(data_dir, tmp_path / "cache", train={"steps": 5}), run, verbose=0, quiet=True)
    assert res.summary["steps"] == 5
    assert [n for n in stale if (run / n).exists()] == []
    assert [n for n in kept if not (run / n).exists()] == []
    assert _temp_files(run) == sorted([n for n in kept if ".tmp" in n])


def test_tiny_or_unreadable_validation_images_are_skipped_by_name(data_dir, tmp_path, set5):
    """They used to end the run with a traceback (the SSIM window does not fit)."""
    import shutil
    import warnings

    from PIL import Image

    val = tmp_path / "val"
    val.mkdir()
    shutil.copy(sorted(set5.iterdir())[0], val / "a.png")
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(val / "tiny.png")
    (val / "broken.png").write_bytes(b"no")
    cfg = tiny_config(data_dir, tmp_path / "cache", data={"val": [str(val)]}, train={"steps": 5})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = train(cfg, tmp_path / "run", verbose=0, quiet=True)
    assert res.summary["val_sets"]["val"]["images"] == 1
    text = [str(w.message) for w in caught if "validation set" in str(w.message)]
    assert len(text) == 2 and "tiny.png: 10x12 is too small" in text[1] and "broken.png" in text[0]
    (val / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="no usable validation image"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(cfg, tmp_path / "run2", verbose=0, quiet=True)


def test_a_failed_first_start_leaves_no_run_folder_but_keeps_one_that_existed(data_dir, tmp_path):
    """The validation folder holds no usable image, found after the run folder was made: the folder (and the
    parents made for it) go; a folder that was there before stays, with what it held."""
    val = tmp_path / "val"
    val.mkdir()
    (val / "broken.png").write_bytes(b"no")
    cfg = tiny_config(data_dir, tmp_path / "cache", data={"val": [str(val)]}, train={"steps": 5})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError, match="no usable validation image"):
            train(cfg, tmp_path / "runs" / "new", verbose=0, quiet=True)
        assert not (tmp_path / "runs").exists()
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("x")
        with pytest.raises(FileNotFoundError, match="no usable validation image"):
            train(cfg, mine, verbose=0, quiet=True)
    assert (mine / "notes.txt").read_text() == "x" and (mine / "config.yaml").is_file()


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="grappler is TensorFlow's")
def test_a_tensorflow_run_logs_no_remapper_error_and_keeps_the_options_elsewhere(data_dir, tmp_path, capfd):
    """The train step's graph is optimised without grappler's remapper (whose second pass failed on the
    LeakyReLU gradient and logged an error on every run); the options outside the step are left as they were."""
    import tensorflow as tf

    from drn_tf.train import loop

    seen = []
    real = loop.grappler_options

    def spy(options):
        seen.append(dict(options))
        return real(options)

    before = tf.config.optimizer.get_experimental_options()
    cfg = tiny_config(data_dir, tmp_path / "cache", data={"val": ["benchmark/Set5"]}, train={"steps": 4,
                                                                                         "epoch_steps": 2})
    capfd.readouterr()
    import unittest.mock

    with unittest.mock.patch.object(loop, "grappler_options", spy):
        res = train(cfg, tmp_path / "run", verbose=0, quiet=True)
    err = capfd.readouterr().err
    assert res.summary["steps"] == 4 and np.isfinite(res.summary["best_val_psnr"])
    assert "remapper failed" not in err and "meta_optimizer" not in err, err[-2000:]
    assert seen == [loop.TRAIN_STEP_GRAPPLER] * 4  # every train step, nothing else
    assert tf.config.optimizer.get_experimental_options() == before


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root and the right to mount; skipped elsewhere)."""
    import os
    import subprocess

    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.slow
def test_drn_train_on_a_really_full_disk_fails_in_one_line_without_a_crash(data_dir, tmp_path, small_disk):
    """On a 2 MB disk: `drn train` of drn_s_x2 (a 4 MB checkpoint) is refused before training, in one line;
    with the free-space check switched off the checkpoint write itself hits ENOSPC: an error, no partial file,
    and no segmentation fault (HDF5 writing the file itself left a dataset half-closed and crashed at exit)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, DRN_CACHE_DIR=str(tmp_path / "cache"))
    args = ["train", "--preset", "drn_s_x2", "--data", str(data_dir), "--train", "benchmark/Set5", "--val",
            "--steps", "1", "--batch-size", "2", "--patch-size", "16", "--verbose", "0", "--out", str(small_disk / "run")]
    drn = "import sys; from drn_tf.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", drn, *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"drn train: error: {small_disk / 'run'}: no space left on device for the checkpoint; ")
    assert _temp_files(small_disk) == [] and not (small_disk / "run" / "checkpoint" / "state.json").exists()

    script = ("import sys; from drn_tf.train import state; from drn_tf.cli.main import main; "
              "state.check_free_space = lambda *a: None; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]  # not 139
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"drn train: error: {small_disk / 'run'}") and "no space left on device while writing " \
        "the checkpoint; " in last and "Traceback" not in proc.stderr
    assert _temp_files(small_disk) == [] and not (small_disk / "run" / "checkpoint" / "state.json").exists()
