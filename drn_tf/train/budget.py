"""A run's length, and fitting it to a wall-clock budget (``train.minutes`` / ``--minutes``).

:class:`RunPlan` is how many epochs the run trains; what depends on it (the validation after the last
epoch, the step count ``state.json`` records) holds the same object, so a re-plan is one call,
:meth:`RunPlan.refit`. :class:`Budget` measures each epoch's wall-clock time (fed by the
:class:`drn_tf.train.callbacks.Deadline` and :class:`drn_tf.train.callbacks.EpochWallClock` callbacks) and
says when another epoch no longer fits. :func:`fit_within` runs a budget run: :data:`CALIBRATION_EPOCHS`
epochs (inside the warm-up), ``train.steps`` fitted to what is left (:func:`fit_to_budget`), the rest.
The fitted count goes to ``config.yaml`` and ``state.json``; a resumed run keeps it.
"""

from __future__ import annotations

import time
from typing import Callable

CALIBRATION_EPOCHS = 3  # epochs a --minutes run trains before it fits train.steps to the budget


def fit_to_budget(*, seconds_left: float, epoch_walls: list[float], done_epochs: int) -> int:
    """Total epochs of a ``--minutes`` run after its calibration epochs, whose wall-clock times (training,
    validation, checkpoint, logs) are ``epoch_walls``: as many more as fit in ``seconds_left`` at the time
    of the epochs after the first (the first also compiled), less a reserve of one compilation (the first
    epoch's extra time: the train function is traced again), one epoch (the final files) and 5 % (speed
    noise). Never fewer than ``done_epochs``."""
    timed = epoch_walls[1:] or epoch_walls
    per_epoch = max(sum(timed) / len(timed), 1e-9)
    compile_s = max(0.0, epoch_walls[0] - per_epoch)
    usable = 0.95 * seconds_left - compile_s - per_epoch
    return done_epochs + (int(usable // per_epoch) if usable > 0 else 0)


class RunPlan:
    """The run's length: ``epochs`` epochs of ``epoch_steps`` steps; ``fitted`` when a wall-clock budget
    set it (then ``state.json`` records it, :meth:`state_keys`, and a resumed run keeps it)."""

    def __init__(self, epochs: int, epoch_steps: int, fitted: bool = False):
        self.epochs, self.epoch_steps, self.fitted = int(epochs), int(epoch_steps), fitted

    @property
    def steps(self) -> int:
        return self.epochs * self.epoch_steps

    def refit(self, epochs: int) -> None:
        self.epochs, self.fitted = int(epochs), True

    def state_keys(self) -> dict:
        return {"planned_steps": self.steps} if self.fitted else {}


class Budget:
    """A wall-clock budget ending at ``deadline`` (``time.monotonic()``): each epoch's wall-clock time, from
    its start to the end of its callbacks (``epoch_walls``), and whether another epoch still fits."""

    def __init__(self, deadline: float):
        self.deadline = float(deadline)
        self.stopped_epoch = None  # the epoch after which the budget stopped the run
        self.epoch_walls: list[float] = []
        self._t = self._trained = None
        self._overhead = 0.0  # the last epoch's time after its training: validation, checkpoint, logs

    def epoch_begin(self) -> None:
        self._t = time.monotonic()

    def epoch_trained(self, epoch: int) -> bool:
        """At the end of epoch ``epoch``'s training (from 1): True (stop now) when another epoch taking as
        long as this one, validation and checkpoint included, would end past the deadline."""
        now = time.monotonic()
        self._trained = now - self._t
        if now + self._trained + self._overhead >= self.deadline:
            self.stopped_epoch = epoch
            return True
        return False

    def epoch_done(self) -> None:
        """After the epoch's other callbacks."""
        wall = time.monotonic() - self._t
        self.epoch_walls.append(wall)
        self._overhead = max(0.0, wall - self._trained)

    def epochs_that_fit(self, done: int) -> int:
        """Total epochs, ``done`` of them trained (:func:`fit_to_budget`); ``done`` when nothing was timed."""
        if not self.epoch_walls:
            return done
        return fit_to_budget(seconds_left=self.deadline - time.monotonic(), epoch_walls=self.epoch_walls,
                             done_epochs=done)

    def timing(self) -> tuple[float, float]:
        """(seconds of an epoch after the first, seconds of the first, which compiled)."""
        timed = self.epoch_walls[1:] or self.epoch_walls or [float("nan")]
        return sum(timed) / len(timed), (self.epoch_walls or timed)[0]


def fit_within(budget: Budget, plan: RunPlan, fit: Callable, *, start_epoch: int, stopped: Callable[[], bool],
               replan: Callable[[int], None]) -> list:
    """Train a budget run: :data:`CALIBRATION_EPOCHS` epochs, then ``plan`` refitted to the epochs that fit in
    what is left of ``budget`` (as many as are done when it stopped already, or ``stopped()``, e.g. a NaN
    loss), ``replan(done)`` (the schedule and the files follow the plan; the train function is traced
    again), then the rest. ``fit(first, last)`` trains epochs ``[first, last)`` and returns its History.
    Returns the Histories."""
    histories = [fit(start_epoch, min(plan.epochs, start_epoch + CALIBRATION_EPOCHS))]
    done = start_epoch + len(histories[-1].epoch)
    plan.refit(done if budget.stopped_epoch or stopped() else budget.epochs_that_fit(done))
    replan(done)
    if plan.epochs > done:
        histories.append(fit(done, plan.epochs))
    return histories
