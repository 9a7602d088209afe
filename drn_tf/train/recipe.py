"""What a run trains with: the loss, the learning-rate schedule, the optimizer and the compiled model.

Each is a table name -> builder (:data:`LOSSES`, :data:`SCHEDULES`, :data:`OPTIMIZERS`); the config's
choices (``train.loss``, ``schedule.name``, ``optimizer.name``) are these tables' keys, so a new loss,
schedule or optimizer is one entry here (and its parameters, if any, in the config schema). Every schedule
says how it follows a new step count (a ``--minutes`` run fits ``train.steps`` after it started), or that
it cannot (``refit=None``: such a schedule is refused for a wall-clock budget when the config is read).

Keras is imported by the builders only, so the tables can be read without it (``drn train --help``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Choice:
    """One entry of a table: its ``--help`` text and its builder."""

    help: str
    build: Callable


@dataclass(frozen=True)
class Schedule(Choice):
    """A learning-rate schedule: ``build(cfg)`` gives a Keras schedule (or a constant rate);
    ``refit(schedule, cfg)`` fits it, in place, to the config's new ``train.steps`` (the train function
    must be traced again to see it); ``None`` when it cannot follow a new step count."""

    refit: Callable | None = None


def choices_help(table: dict) -> str:
    """``"a (what a is) | b | ..."`` for the config's help."""
    return " | ".join(f"{name} ({entry.help})" if entry.help else name for name, entry in table.items())


# ------------------------------------------------------------------ losses


def l1_loss():
    """The paper's loss: mean absolute error."""
    import keras

    return keras.losses.MeanAbsoluteError(name="l1")


LOSSES: dict[str, Choice] = {
    "l1": Choice("mean absolute error, the paper's", l1_loss),
}


def build_loss(cfg: dict):
    return LOSSES[cfg["train"]["loss"]].build()


# ------------------------------------------------------------------ schedules


def warmup_and_decay(cfg: dict) -> tuple[int, int]:
    """(warm-up steps, cosine decay steps) of the cosine schedule over ``train.steps``; a ``--minutes`` run
    warms up over at most 10 % of its fitted steps."""
    s, steps = cfg["schedule"], cfg["train"]["steps"]
    warm = s["warmup_steps"]
    if cfg["train"].get("minutes") is not None:
        warm = min(warm, max(1, steps // 10))
    warm = min(warm, max(0, steps - 1))
    return warm, steps - warm


def _cosine(cfg: dict):
    import keras

    lr, s, steps = cfg["optimizer"]["learning_rate"], cfg["schedule"], cfg["train"]["steps"]
    warm, decay = warmup_and_decay(cfg)
    if warm == 0:
        return keras.optimizers.schedules.CosineDecay(lr, steps, alpha=s["final_ratio"])
    return keras.optimizers.schedules.CosineDecay(
        lr * 0.01, decay, alpha=s["final_ratio"], warmup_target=lr, warmup_steps=warm
    )


def _refit_cosine(schedule, cfg: dict) -> None:
    """Warm-up and decay over the new ``train.steps`` (the warm-up stays, at least one step, if it was there)."""
    warm, decay = warmup_and_decay(cfg)
    if schedule.warmup_steps:
        schedule.warmup_steps, schedule.decay_steps = max(warm, 1), decay
    else:
        schedule.decay_steps = cfg["train"]["steps"]


def _step(cfg: dict):
    import keras

    s = cfg["schedule"]
    return keras.optimizers.schedules.ExponentialDecay(cfg["optimizer"]["learning_rate"], s["decay_every"],
                                                       s["gamma"], staircase=True)


def _constant(cfg: dict) -> float:
    return cfg["optimizer"]["learning_rate"]


def _independent_of_steps(schedule, cfg: dict) -> None:
    """Nothing to refit: the rate at a step does not depend on ``train.steps``."""


SCHEDULES: dict[str, Schedule] = {
    "cosine": Schedule("linear warm-up, cosine decay", _cosine, _refit_cosine),
    "step": Schedule("x gamma every decay_every steps", _step, _independent_of_steps),
    "constant": Schedule("", _constant, _independent_of_steps),
}


def refittable_schedules() -> list[str]:
    return [name for name, s in SCHEDULES.items() if s.refit is not None]


def build_schedule(cfg: dict):
    return SCHEDULES[cfg["schedule"]["name"]].build(cfg)


def refit_schedule(schedule, cfg: dict) -> None:
    """Fit ``schedule`` (from :func:`build_schedule`) to the config's new ``train.steps``, in place; the
    train function must be traced again to see it. ``ValueError`` for a schedule that cannot."""
    name = cfg["schedule"]["name"]
    refit = SCHEDULES[name].refit
    if refit is None:
        raise ValueError(f"schedule.name {name} cannot follow a new step count (train.steps "
                         f"{cfg['train']['steps']}); schedules that can: {', '.join(refittable_schedules())}")
    refit(schedule, cfg)


# ------------------------------------------------------------------ optimizers


def _adam(o: dict, common: dict):
    import keras

    return keras.optimizers.Adam(beta_1=o["beta_1"], beta_2=o["beta_2"], epsilon=o["epsilon"],
                                 weight_decay=o["weight_decay"], **common)


def _adamw(o: dict, common: dict):
    import keras

    wd = 1e-4 if o["weight_decay"] is None else o["weight_decay"]
    return keras.optimizers.AdamW(weight_decay=wd, beta_1=o["beta_1"], beta_2=o["beta_2"], epsilon=o["epsilon"],
                                  **common)


def _sgd(o: dict, common: dict):
    import keras

    return keras.optimizers.SGD(momentum=o["momentum"], weight_decay=o["weight_decay"], **common)


OPTIMIZERS: dict[str, Choice] = {
    "adam": Choice("", _adam),
    "adamw": Choice("", _adamw),
    "sgd": Choice("", _sgd),
}


def build_optimizer(cfg: dict, schedule=None):
    o = cfg["optimizer"]
    common = dict(learning_rate=build_schedule(cfg) if schedule is None else schedule, use_ema=o["use_ema"],
                  ema_momentum=o["ema_momentum"])
    if o["clipnorm"]:
        common["clipnorm"] = o["clipnorm"]
    return OPTIMIZERS[o["name"]].build(o, common)


# ------------------------------------------------------------------ the model


def build_model(cfg: dict, schedule=None, jit_compile="auto", steps_per_execution: int = 1):
    """The model of a resolved config, compiled with its optimizer (built, so a checkpoint loads into it)
    and its loss; in the current strategy scope / distribution."""
    from drn_tf.models.build import from_preset

    model = from_preset(cfg["model"]["preset"], load_weights=False, **cfg["model"]["overrides"])
    model.compile(optimizer=build_optimizer(cfg, schedule), loss=build_loss(cfg), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    model.optimizer.build(model.trainable_variables)
    return model
