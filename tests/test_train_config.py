"""Config handling of ``drn train`` (no training): defaults, YAML, overrides, checks, --help."""

from __future__ import annotations


import pytest
import yaml

from drn_tf.train.config import (
    DEFAULTS,
    ConfigError,
    dump_config,
    load_config,
    parse_override,
    resolve_config,
)

from paths import ROOT  # noqa: E402
CONFIGS = sorted((ROOT / "training" / "configs").glob("*.yaml"))


def test_shipped_configs_resolve():
    from drn_tf.models.presets import get_preset

    names = {p.stem for p in CONFIGS}
    assert {"drn_x2", "drn_x3", "drn_x4"} <= names
    for p in CONFIGS:
        cfg = resolve_config(load_config(p))
        preset = cfg["model"]["preset"]
        assert get_preset(preset)["clean"].endswith(f"_x{cfg['model']['scale']}"), p  # drn_x2, drn_s_x2_photo ...
        assert preset == p.stem, p
        assert cfg["train"]["steps"] % cfg["train"]["epoch_steps"] == 0


def test_overrides_layer_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: {preset: drn_s_x3}\ntrain: {batch_size: 32, steps: 2500, epoch_steps: 1000}\n")
    cfg = resolve_config(load_config(f, overrides={"train": {"batch_size": 8}},
                                     sets=["train.batch_size=4", "optimizer.use_ema=true", "data.val=[]"]))
    assert cfg["train"]["batch_size"] == 4  # --set beats explicit options beats the file
    assert cfg["optimizer"]["use_ema"] is True
    assert cfg["data"]["val"] == []
    assert cfg["model"]["scale"] == 3
    assert cfg["train"]["steps"] == 3000  # rounded up to whole epochs
    # untouched keys keep their defaults
    assert cfg["optimizer"]["beta_2"] == DEFAULTS["optimizer"]["beta_2"]
    # the dump is the same config again
    assert resolve_config(yaml.safe_load(dump_config(cfg))) == cfg


def test_family_plus_scale_names_the_preset():
    cfg = resolve_config(load_config(overrides={"model": {"preset": "drn_s", "scale": 4}}))
    assert cfg["model"]["preset"] == "drn_s_x4"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["train.batchsize=8"], "unknown key train.batchsize"),
        (["trian.batch_size=8"], "unknown section"),
        (["train.batch_size=0"], "train.batch_size must be >= 1"),
        (["train.batch_size=eight"], "must be an integer"),
        (["model.preset=drn_x2", "model.scale=3"], "does not match preset"),
        (["model.preset=vdsr"], "is not a preset"),
        (["optimizer.name=adagrad"], "optimizer.name"),
        (["schedule.name=linear"], "schedule.name"),
        (["train.mixed_precision=float64"], "mixed_precision"),
        (["model.overrides={scale: 3}"], "may not change the scale"),
        (["data.train=[]"], "data.train"),
        (["train.minutes=0"], "train.minutes must be > 0"),
        (["train.minutes=soon"], "train.minutes"),
        (["train.tensorboard=maybe"], "train.tensorboard must be auto, true or false"),
        (["data.pipeline=torch"], "data.pipeline must be auto, tf.data, numpy or device"),
        (["data.workers=-1"], "data.workers must be >= 0"),
    ],
)
def test_bad_configs_are_named(sets, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(load_config(sets=sets))


def test_parse_override_forms():
    assert parse_override("optimizer.learning_rate=1e-3") == ("optimizer", "learning_rate", 1e-3)
    assert parse_override("data.val=[benchmark/Set5, benchmark/Set14]")[2] == ["benchmark/Set5", "benchmark/Set14"]
    assert parse_override("model.init_from=") == ("model", "init_from", None)
    for bad in ("train.steps", "steps=3", "a.b.c=1"):
        with pytest.raises(ConfigError):
            parse_override(bad)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  preset: drn_s_x2\n   scale: 2\n")
    rc, out, err = _drn(capsys, "--config", str(bad), "--print-config")
    assert rc == 2 and out == ""
    assert err.strip() == f"drn train: error: {bad}:3:9: not valid YAML: mapping values are not allowed here"
    bad.write_text("train:\n  steps: 5\n  batch_size: [4\n")
    rc, _, err = _drn(capsys, "--config", str(bad), "--out", str(tmp_path / "run"))
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"drn train: error: {bad}:4:1: not valid YAML: expected ',' or ']'") and \
        "flow sequence started at line 3, column 15" in err
    assert not (tmp_path / "run").exists()


def _drn(capsys, *args):
    """``drn train ARGS`` in this process: (exit status, stdout, stderr)."""
    from drn_tf.cli.main import main

    try:
        rc = main(["train", *args])
    except SystemExit as exc:  # --help
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_help_explains_config_keys_and_print_config(capsys):
    rc, out, _ = _drn(capsys, "--help")
    assert rc == 0
    for text in ("--set", "--init-from", "--mixed-precision", "batch_size = 16", "MultiWorkerMirroredStrategy",
                 "Resuming"):
        assert text in out, text
    rc, out, err = _drn(capsys, "--config", str(ROOT / "training/configs/drn_x3.yaml"), "--batch-size", "8",
                        "--set", "train.steps=5", "--set", "train.epoch_steps=2", "--print-config")
    assert rc == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["model"]["preset"] == "drn_x3" and cfg["train"]["batch_size"] == 8 and cfg["train"]["steps"] == 6


def test_cli_reports_user_errors_in_one_line(capsys, tmp_path):
    rc, _, err = _drn(capsys, "--set", "train.batch_size=-1", "--print-config")
    assert rc == 2
    assert err.strip() == "drn train: error: train.batch_size must be >= 1, got -1"
    rc, _, err = _drn(capsys, "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert rc == 2 and "no such data folder" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_data_folders_resolve_under_the_root_then_the_working_directory(tmp_path, monkeypatch):
    from drn_tf.train.config import data_paths, resolve_config

    (tmp_path / "root" / "train" / "A").mkdir(parents=True)
    (tmp_path / "cwd" / "mine" / "val").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = resolve_config({"data": {"train": ["train/A"], "val": ["mine/val", "benchmark/Set5"]}})
    train, val, root = data_paths(cfg, tmp_path / "root")
    assert root == tmp_path / "root" and train == [tmp_path / "root" / "train" / "A"]
    # found relative to the working directory; a folder that is nowhere stays under the root (the error names it)
    assert val == [tmp_path / "cwd" / "mine" / "val", tmp_path / "root" / "benchmark" / "Set5"]


def test_mixed_precision_true_picks_the_fast_policy_for_the_hardware():
    from drn_tf.train.placement import mixed_precision_policy

    assert mixed_precision_policy(False, True) == ("float32", None)
    assert mixed_precision_policy("mixed_bfloat16", False) == ("mixed_bfloat16", None)  # named: as given
    assert mixed_precision_policy(True, True) == ("mixed_float16", None)
    policy, why = mixed_precision_policy(True, False, cpu_flags=["avx2", "avx512f", "avx512_bf16"])
    assert policy == "mixed_bfloat16" and "bf16 instructions" in why
    assert mixed_precision_policy(True, False, cpu_flags=["amx_bf16"])[0] == "mixed_bfloat16"
    policy, why = mixed_precision_policy(True, False, cpu_flags=["avx2", "fma"])
    assert policy == "float32" and "no bf16" in why


def test_cli_names_each_skipped_image_once_and_too_small_ones_as_too_small(capsys, tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(np.zeros((30, 20, 3), np.uint8)).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"no")
    rc, _, err = _drn(capsys, "--train", str(folder), "--val", "--out", str(tmp_path / "run"), "--patch-size", "16")
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines() == [
        f"drn train: warning: skipping unreadable image: {folder / 'broken.png'}: not an image file PIL can read",
        "drn train: warning: skipping 1 of 2 images too small for the patch (WxH < 32x32: x2 LR patches of 16): "
        "small.png (20x30)",
        f"drn train: error: no usable images under {folder} (2 images: 1 unreadable, 1 too small for the patch "
        "(WxH < 32x32))",
    ]


def test_fit_to_budget_counts_epochs_at_the_measured_speed():
    from drn_tf.train.budget import fit_to_budget

    # epochs of 3 s after a first one of 11 s (8 s compiling): (95 % of 100 - 8 - 3) // 3 more, the reserve
    # being one compilation, one epoch and 5 %
    assert fit_to_budget(seconds_left=100, epoch_walls=[11, 3, 3], done_epochs=3) == 3 + 28
    assert fit_to_budget(seconds_left=10, epoch_walls=[11, 3], done_epochs=2) == 2
