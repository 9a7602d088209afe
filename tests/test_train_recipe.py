"""The pieces of a training run, each on its own: the recipe tables (losses, schedules, optimizers) and
how a schedule follows a new step count, the decisions of the machine from made-up device lists, the
wall-clock re-plan, and the end of a run for a model without a multiply-add table."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from drn_tf.train import recipe  # noqa: E402
from drn_tf.train.budget import Budget, RunPlan, fit_within  # noqa: E402
from drn_tf.train.config import ConfigError, load_config, resolve_config  # noqa: E402
from drn_tf.train.placement import Machine, decide  # noqa: E402

TINY = {"channels": 16, "num_groups": 1, "num_blocks": 2}


def _rates(schedule, steps):
    return [float(schedule(s)) if callable(schedule) else float(schedule) for s in steps]


def _config(name, steps, minutes=None, **schedule):
    sets = [f"schedule.name={name}", f"train.steps={steps}", "train.epoch_steps=10", "optimizer.learning_rate=1e-3",
            *(f"schedule.{k}={v}" for k, v in schedule.items())]
    if minutes is not None:
        sets.append(f"train.minutes={minutes}")
    return resolve_config(load_config(sets=sets))


# ------------------------------------------------------------------ schedules and a new step count


@pytest.mark.parametrize("name", list(recipe.SCHEDULES))
@pytest.mark.parametrize("minutes", [None, 5])
def test_every_schedule_refitted_to_a_new_step_count_is_the_schedule_built_for_it(name, minutes):
    """What a --minutes run does after its calibration epochs: the schedule built for 1000 steps, refitted
    to 200, gives at every step the rate of the schedule built for 200 steps."""
    if recipe.SCHEDULES[name].refit is None:
        pytest.skip(f"{name} cannot follow a new step count (refused: test below)")
    cfg = _config(name, 1000, minutes, warmup_steps=100, decay_every=50, gamma=0.5)
    schedule = recipe.build_schedule(cfg)
    cfg["train"]["steps"] = 200
    recipe.refit_schedule(schedule, cfg)
    steps = list(range(0, 201, 5))
    np.testing.assert_allclose(_rates(schedule, steps), _rates(recipe.build_schedule(cfg), steps), rtol=1e-6)


def test_a_refitted_cosine_ends_at_its_final_ratio_on_the_new_last_step():
    cfg = _config("cosine", 1000, minutes=5, warmup_steps=100, final_ratio=0.01)
    schedule = recipe.build_schedule(cfg)
    cfg["train"]["steps"] = 200
    recipe.refit_schedule(schedule, cfg)
    peak, end = _rates(schedule, [20, 200])  # a budget run warms up over at most 10 % of its steps
    assert peak == pytest.approx(1e-3) and end == pytest.approx(1e-5, rel=1e-4)
    assert _rates(schedule, [100])[0] < 0.9e-3  # decaying long before the old warm-up would have ended


def test_a_schedule_that_cannot_follow_a_new_step_count_is_refused_clearly(monkeypatch):
    """A schedule registered without ``refit``: taken for a fixed step count, refused for a wall-clock budget
    when the config is read (ConfigError naming the schedules that can), and refit_schedule says why."""
    monkeypatch.setitem(recipe.SCHEDULES, "onecycle",
                        recipe.Schedule("one cycle", lambda cfg: cfg["optimizer"]["learning_rate"], None))
    cfg = _config("onecycle", 100)
    assert recipe.build_schedule(cfg) == 1e-3
    with pytest.raises(ConfigError, match=r"schedule.name onecycle cannot follow the step count a wall-clock "
                                          r"budget \(train.minutes\) fits; use cosine, step or constant"):
        _config("onecycle", 100, minutes=5)
    with pytest.raises(ValueError, match="onecycle cannot follow a new step count .*that can: cosine, step, constant"):
        recipe.refit_schedule(1e-3, cfg)


# ------------------------------------------------------------------ losses and optimizers are tables


def test_a_loss_added_to_the_table_is_a_config_choice(monkeypatch):
    assert resolve_config(load_config())["train"]["loss"] == "l1"
    with pytest.raises(ConfigError, match="train.loss must be l1; got 'l2'"):
        resolve_config(load_config(sets=["train.loss=l2"]))
    monkeypatch.setitem(recipe.LOSSES, "l2", recipe.Choice("mean squared error", keras.losses.MeanSquaredError))
    cfg = resolve_config(load_config(overrides={"model": {"preset": "drn_s_x2", "overrides": dict(TINY)}},
                                     sets=["train.loss=L2"]))
    model = recipe.build_model(cfg)
    assert cfg["train"]["loss"] == "l2" and isinstance(model.loss, keras.losses.MeanSquaredError)


@pytest.mark.parametrize("name", list(recipe.OPTIMIZERS))
def test_every_optimizer_of_the_table_builds(name):
    cfg = resolve_config(load_config(sets=[f"optimizer.name={name}", "schedule.name=constant"]))
    opt = recipe.build_optimizer(cfg)
    assert type(opt).__name__.lower() == name and float(opt.learning_rate) == pytest.approx(5e-4)


# ------------------------------------------------------------------ the machine's decisions


def _decide(sets=(), **machine):
    return decide(resolve_config(load_config(sets=list(sets))), Machine(**{"backend": "jax", "accelerators": [],
                                                                            **machine}))


def test_decisions_follow_the_devices():
    gpu = SimpleNamespace(platform="gpu", device_kind="H200")
    d = _decide(["train.mixed_precision=true"], accelerators=[gpu, gpu], replicas=2)
    assert (d.pipeline, d.loop, d.jit_compile, d.policy) == ("numpy", "fit", True, "mixed_float16")
    d = _decide(["train.mixed_precision=true"], backend="tensorflow", cpu_flags=["avx2"])
    assert (d.pipeline, d.jit_compile, d.policy) == ("tf.data", False, "float32")
    assert "no bf16 instructions" in d.notes[0]
    d = _decide(["train.steps_per_execution=4"], backend="tensorflow", replicas=4, multi_worker=True)
    assert (d.loop, d.steps_per_execution) == ("custom", 1)  # the strategy.run loop runs one step per call
    d = _decide(tensorflow_importable=False)
    assert not d.tensorboard and "TensorBoard logs off" in d.notes[-1]


@pytest.mark.parametrize("sets, machine, message", [
    (["data.pipeline=device"], {"backend": "tensorflow"}, "data.pipeline device needs the JAX backend"),
    (["data.pipeline=tf.data"], {}, "data.pipeline tf.data needs the TensorFlow backend"),
    (["data.pipeline=numpy"], {"backend": "tensorflow", "replicas": 2, "multi_worker": True}, "does not shard"),
    (["train.minutes=5"], {"backend": "tensorflow", "replicas": 2, "multi_worker": True}, "not supported under multi"),
    (["train.batch_size=6"], {"replicas": 4}, "not a multiple of the 4 replicas"),
    (["train.loop=custom"], {}, "train.loop custom is the tf.distribute loop"),
    (["train.tensorboard=true"], {"tensorflow_importable": False}, "TensorFlow is not importable"),
])
def test_what_cannot_run_on_the_machine_is_named(sets, machine, message):
    with pytest.raises(ConfigError, match=message):
        _decide(sets, **machine)


# ------------------------------------------------------------------ the wall-clock re-plan


def test_fit_within_replans_the_shared_plan_once_after_the_calibration_epochs():
    """The plan object the callbacks hold is the one re-planned; replan sees it fitted; the rest is trained."""
    import time

    plan, budget, calls, seen = RunPlan(1000, 10), Budget(deadline=time.monotonic() + 100), [], []
    budget.epoch_walls = [5.0, 1.0, 1.0]  # 1 s epochs after a first one of 5 s: 95 % of 100 s, less 5 s, fit 89

    def fit(first, last):
        calls.append((first, last))
        return SimpleNamespace(epoch=list(range(first, last)))

    fit_within(budget, plan, fit, start_epoch=2, stopped=lambda: False,
               replan=lambda done: seen.append((done, plan.epochs, plan.state_keys())))
    assert plan.fitted and 85 < plan.epochs - 5 <= 89 and calls == [(2, 5), (5, plan.epochs)]
    assert seen == [(5, plan.epochs, {"planned_steps": plan.epochs * 10})]

    stopped_plan, calls = RunPlan(1000, 10), []
    fit_within(budget, stopped_plan, fit, start_epoch=0, stopped=lambda: True, replan=lambda done: None)
    assert calls == [(0, 3)] and stopped_plan.epochs == 3 and stopped_plan.state_keys() == {"planned_steps": 30}


# ------------------------------------------------------------------ the end of a run


def test_the_end_of_a_run_is_written_for_a_model_without_a_multiply_add_table(data_dir, tmp_path, monkeypatch):
    """A model whose architecture has no multiply-add table (model_config refuses it, as for a non-DRN):
    model.keras and run.json are still written, with no FLOP figures."""
    import drn_tf.models.analysis
    from drn_tf.models.drn import load_model
    from drn_tf.train.engine import train

    def not_a_drn(model):
        raise ValueError("not a DRN model: its config lacks channels")

    monkeypatch.setattr(drn_tf.models.analysis, "model_config", not_a_drn)
    cfg = load_config(overrides={
        "model": {"preset": "drn_s_x2", "overrides": dict(TINY)},
        "data": {"root": str(data_dir), "train": ["benchmark/Set5"], "val": [], "patch_size": 16,
                 "cache_dir": str(tmp_path / "cache")},
        "train": {"batch_size": 2, "steps": 2, "epoch_steps": 2, "tensorboard": False},
        "schedule": {"name": "constant"},
    })
    res = train(cfg, tmp_path / "run", verbose=0, quiet=True)
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["steps"] == 2 and summary["train_flops_per_patch"] is None and summary["train_tflops"] is None
    assert summary["patches_per_s"] > 0
    for a, b in zip(load_model(tmp_path / "run" / "model.keras").get_weights(), res.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    from drn_tf.train.summary import train_flops_per_patch

    assert train_flops_per_patch(res.model, 16) > 0  # a DRN has its table
