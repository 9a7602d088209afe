"""The training engine behind ``drn train``, on the TensorFlow and the JAX backends (``KERAS_BACKEND``).

One YAML config (:mod:`drn_tf.train.config`) describes a run; :func:`train` runs it, or resumes it, in
its run directory (:mod:`drn_tf.train.rundir`: the files, the commit point, crash safety). Its phases,
in order, each a method of one run object:

1. placement (:mod:`drn_tf.train.placement`): the distribution (``tf.distribute`` strategy, JAX
   ``DataParallel``) and what the machine decides: input pipeline, loop, XLA, dtype policy, TensorBoard;
2. the run directory: stale temporary files removed, resume or start, ``config.yaml``;
3. data (:mod:`drn_tf.train.inputs`): the training stream of the pipeline, the validation sets;
4. the model (:mod:`drn_tf.train.recipe`: loss, schedule, optimizer), resumed from the checkpoint or
   initialised from another model (:mod:`drn_tf.train.warmstart`);
5. callbacks (:mod:`drn_tf.train.callbacks`): step stats, validation, history, checkpoints, deadline;
6. training (:mod:`drn_tf.train.loop`: ``model.fit``, or a ``strategy.run`` loop under multi-worker),
   fitted to a wall-clock budget with ``--minutes`` (:mod:`drn_tf.train.budget`);
7. the end: ``model.keras`` and ``run.json`` (:mod:`drn_tf.train.summary`).

Every file is the same on both backends: a checkpoint written under one resumes under the other with
the same weights, optimizer state and step counter. Nothing here imports Keras or a framework at module
level; :func:`train` imports them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drn_tf.train import rundir
from drn_tf.train.budget import Budget, RunPlan, fit_within
from drn_tf.train.config import ConfigError, data_paths, resolve_config
from drn_tf.train.inputs import StreamSpec, describe_degradation, load_val_set, training_stream
from drn_tf.train.loop import fit_epochs
from drn_tf.train.placement import (
    Machine,
    accelerators,
    backend_name,
    check_workers_agree,
    decide,
    distribute,
    tensorflow_importable,
)
from drn_tf.train.recipe import build_model, build_schedule, refit_schedule
from drn_tf.train.state import checkpoint_need, model_bytes, plain_clone, weight_values
from drn_tf.train.summary import run_summary
from drn_tf.train.warmstart import init_from


@dataclass
class TrainResult:
    run_dir: Path
    model: object
    strategy: object
    history: list
    summary: dict
    resumed_from: dict | None


def train(cfg: dict, run_dir, *, data_root=None, fresh=False, verbose="auto", strategy="auto",
          cpu_replicas=0, quiet=False) -> TrainResult:
    """Run (or resume) the training run of the config ``cfg`` in ``run_dir``.

    ``cfg`` as from :func:`drn_tf.train.config.load_config` (resolved here). On TensorFlow, ``strategy``:
    auto | default | mirrored | multi-worker, or a ``tf.distribute.Strategy``, and
    ``cpu_replicas``: split the CPU into that many logical devices first
    (MirroredStrategy on one CPU; must run before TensorFlow initialises). On JAX,
    ``strategy`` is auto (or default): DataParallel over the local devices when there
    are several (``TrainResult.strategy`` is then that distribution, else None).
    ``fresh``: discard an existing checkpoint of ``run_dir``. Raises
    :class:`ConfigError` for unusable configs/run directories and
    ``FileNotFoundError`` for missing data.
    """
    import keras

    saved_policy = keras.config.dtype_policy()
    saved_distribution = keras.distribution.distribution()
    run = None
    try:
        run = _Run(cfg, run_dir, data_root=data_root, quiet=quiet)
        run.place(strategy, cpu_replicas, verbose)
        finished = run.open(fresh)
        if finished is not None:
            return finished
        run.load_data()
        run.build()
        run.make_callbacks()
        run.fit()
        return run.finish()
    except BaseException:
        if run is not None and run.created:  # a first start that failed leaves no folder behind
            rundir.remove_failed_start(run.run_dir, run.created)
        raise
    finally:
        keras.config.set_dtype_policy(saved_policy)  # the global policy as it was (a mixed-precision run sets it)
        if keras.distribution.distribution() is not saved_distribution:  # a JAX DataParallel run sets one
            keras.distribution.set_distribution(saved_distribution)


def _log(msg, quiet=False):
    if not quiet:
        print(msg, flush=True)


class _Run:
    """One call of :func:`train`: its phases, in order, and what they hand on to the next."""

    def __init__(self, cfg: dict, run_dir, *, data_root, quiet: bool):
        self.t_begin = time.monotonic()
        self.quiet = quiet
        self.cfg = resolve_config(cfg)
        self.t = self.cfg["train"]
        self.run_dir = Path(run_dir)
        self.created: list[Path] = []  # the folders open() made (the run directory and missing parents)
        self.train_dirs, self.val_dirs, root = data_paths(self.cfg, data_root)
        self.cfg["data"]["root"] = str(root)
        for p in self.train_dirs + self.val_dirs:
            if not p.exists():
                raise FileNotFoundError(f"{p}: no such data folder (data root {root}; set --data or data.root)")

    def log(self, msg: str) -> None:
        _log(msg, self.quiet)

    # ---- 1. placement

    def place(self, strategy, cpu_replicas: int, verbose) -> None:
        import keras

        self.backend = backend_name()
        self.dist = distribute(self.backend, strategy, cpu_replicas, batch_size=self.t["batch_size"],
                               deterministic=self.t["deterministic"])
        self.accelerators = accelerators(self.backend)
        self.decisions = decide(self.cfg, Machine(self.backend, self.accelerators, self.dist.replicas,
                                                  self.dist.multi_worker, tensorflow_importable(self.backend)))
        for note in self.decisions.notes:
            self.log(f"[train] {note}")
        keras.config.set_dtype_policy(self.decisions.policy)
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        self.verbose = verbose if self.dist.chief else 0

    # ---- 2. the run directory: resume or start

    def open(self, fresh: bool) -> TrainResult | None:
        """The checkpoint to resume from and the run's plan; a :class:`TrainResult` when nothing is left to do."""
        run_dir, t, chief = self.run_dir, self.t, self.dist.chief
        missing = rundir.missing_folders(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.created = missing if chief else []  # workers other than the chief share it and remove nothing
        if chief:
            for f in rundir.remove_stale_temp_files(run_dir):
                self.log(f"[train] removed {f}, a temporary file of an earlier run that was stopped while writing it")
        if fresh and chief:
            rundir.discard(run_dir)
        self.state = None if fresh else rundir.read_state(run_dir)
        if self.state is not None:
            rundir.check_same_run(run_dir, self.cfg)
        # a budget fitted by the run this one resumes: keep its step count and schedule
        planned = self.state.get("planned_steps") if self.state and t["minutes"] is not None else None
        if planned:
            t["steps"] = int(planned)
        self.calibrate = t["minutes"] is not None and not planned
        self.plan = RunPlan(t["steps"] // t["epoch_steps"], t["epoch_steps"], fitted=bool(planned))
        self.start_epoch = int(self.state["epoch"]) if self.state else 0
        self.start_step = self.start_epoch * t["epoch_steps"]
        if self.dist.multi_worker:
            check_workers_agree(self.dist.strategy, self.start_epoch)
        if chief:
            rundir.write_config(run_dir, self.cfg)
        if self.start_epoch < self.plan.epochs:
            return None
        self.log(f"[train] {run_dir}: already trained {self.state['step']} steps of {t['steps']} (model.keras); "
                 "nothing to do (raise train.steps to continue)")
        from drn_tf.models.drn import load_model

        path = run_dir / rundir.MODEL
        return TrainResult(run_dir, load_model(path) if path.is_file() else None, self.dist.strategy,
                           rundir.read_history(run_dir / rundir.HISTORY), rundir.read_summary(run_dir), self.state)

    # ---- 3. data

    def load_data(self) -> None:
        from drn_tf.core.degrade import TrainDegradation
        from drn_tf.data.patches import load_pairs

        d, t, scale = self.cfg["data"], self.t, self.cfg["model"]["scale"]
        t0 = time.monotonic()
        lrs, hrs, _ = load_pairs(self.train_dirs, scale, cache_dir=d["cache_dir"], min_lr_size=d["patch_size"])
        # only the chief validates
        self.val_sets = [load_val_set(p, scale, d["val_degrade"]) for p in self.val_dirs] if self.dist.chief else []
        sets = ", ".join(f"{v.name} ({len(v.lrs)} images, bicubic {v.bicubic_psnr:.2f} dB)" for v in self.val_sets)
        self.log(f"[data] {len(lrs)} training images ({', '.join(str(p) for p in self.train_dirs)}), "
                 f"validation{' on ' + d['val_degrade'] + ' LR' if d['val_degrade'] else ''}: {sets or 'none'}"
                 f"; {time.monotonic() - t0:.1f} s")
        degrade = TrainDegradation.from_config(d["degrade"])
        text = describe_degradation(degrade)
        if text:
            self.log(f"[data] {text}")
        spec = StreamSpec(lrs, hrs, scale, d["patch_size"], t["batch_size"], t["epoch_steps"], t["seed"], d["augment"],
                          degrade, self.start_step, d["workers"])
        self.dataset = training_stream(self.decisions.pipeline, spec, self.dist, self.log)

    # ---- 4. the model: built, then resumed or initialised

    def build(self) -> None:
        import keras

        keras.utils.set_random_seed(self.t["seed"])
        self.schedule = build_schedule(self.cfg)
        with self.dist.scope():
            self.model = build_model(self.cfg, self.schedule, jit_compile=self.decisions.jit_compile,
                                     steps_per_execution=self.decisions.steps_per_execution)
        self.resumed, self.best, self.best_epoch, self.wall_offset = None, -float("inf"), None, 0.0
        if self.state is not None:
            self._resume()
        elif self.cfg["model"]["init_from"]:
            self._init_from(self.cfg["model"]["init_from"])
        if self.dist.chief and self.state is None:
            rundir.start_history(self.run_dir)

    def _resume(self) -> None:
        state, weights = self.state, self.run_dir / rundir.CHECKPOINT / self.state["weights"]
        self.model.load_weights(weights)
        got = int(np.asarray(self.model.optimizer.iterations.numpy()))
        if got != self.start_step:
            raise ConfigError(f"{weights}: optimizer step {got} does not match epoch "
                              f"{self.start_epoch} x {self.t['epoch_steps']} steps")
        self.resumed = dict(state)
        self.best = state.get("best_val_psnr") or -float("inf")
        self.best_epoch = state.get("best_epoch")
        self.wall_offset = float(state.get("wall_s", 0.0))
        written_by = state.get("backend", "tensorflow")
        self.log(f"[train] resuming {self.run_dir} from epoch {self.start_epoch} (step {got}) of {self.plan.epochs}"
                 + (f" (checkpoint written under {written_by})" if written_by != self.backend else ""))

    def _init_from(self, source) -> None:
        try:
            rep = init_from(self.model, source)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.init_from: {exc}") from None
        self.log(f"[train] initialised {len(rep['loaded'])} layers from {rep['source']} "
                 f"(skipped: {', '.join(rep['skipped']) or 'none'})")
        if not rep["loaded"]:
            raise ConfigError(f"model.init_from {rep['source']}: no layer matches this model")

    # ---- 5. callbacks

    def make_callbacks(self) -> None:
        import keras

        from drn_tf.train.callbacks import Checkpoint, Deadline, EpochWallClock, HistoryCSV, StepStats, Validation

        t, chief, model = self.t, self.dist.chief, self.model
        self.stats = StepStats(t["batch_size"], t["epoch_steps"], self.wall_offset)
        self.save_clone = plain_clone(model)  # float32, outside the scope: writes the .keras files
        eval_clone = plain_clone(model, dtype_policy=None) if self.val_sets and chief else self.save_clone
        self.val_cb = Validation(self.val_sets if chief else [], self.cfg["model"]["scale"], t["val_every"], self.plan,
                                 eval_clone)
        self.budget = Budget(self.t_begin + 60.0 * t["minutes"]) if t["minutes"] is not None else None
        # the deadline first: validation sees the stop
        callbacks = [self.stats] + ([Deadline(self.budget)] if self.budget else []) + [self.val_cb]
        self.ckpt_cb, self.need = None, None
        if chief:
            if self.state is not None:
                rundir.trim_history(self.run_dir, self.start_epoch, self.val_cb.keys())
            best_file = rundir.restore_best(self.run_dir, self.state)  # the best of the committed epochs
            self.need = checkpoint_need(model, self.save_clone, validating=bool(self.val_sets))
            self.ckpt_cb = Checkpoint(self.run_dir, self.save_clone, t["keep_checkpoints"], self.best, self.best_epoch,
                                      self.wall_offset, {"strategy": self.dist.name, "replicas": self.dist.replicas},
                                      best_file, self.need, plan=self.plan)
            callbacks += [HistoryCSV(self.run_dir / rundir.HISTORY, rundir.history_keys(self.val_cb.keys())),
                          self.ckpt_cb]
            if self.decisions.tensorboard:
                callbacks.append(keras.callbacks.TensorBoard(log_dir=str(self.run_dir / rundir.TENSORBOARD),
                                                             write_graph=False))
        callbacks.append(keras.callbacks.TerminateOnNaN())
        if self.budget is not None:
            callbacks.append(EpochWallClock(self.budget))  # last: the epoch's wall-clock time, callbacks included
        self.callbacks = callbacks

    # ---- 6. training

    def fit(self) -> None:
        self._log_start()
        t_fit = time.monotonic()
        if self.calibrate:
            histories = fit_within(self.budget, self.plan, self._fit_epochs, start_epoch=self.start_epoch,
                                   stopped=lambda: self.model.stop_training, replan=self._replan)
        else:
            histories = [self._fit_epochs(self.start_epoch, self.plan.epochs)]
        self.fit_s = time.monotonic() - t_fit
        if self.budget is not None and self.budget.stopped_epoch:
            self.log(f"[train] --minutes {self.t['minutes']:g}: stopped after epoch {self.budget.stopped_epoch} of "
                     f"{self.plan.epochs}: the next epoch would have ended past the budget")
        self.history = {}
        for h in histories:
            for k, v in h.history.items():
                self.history.setdefault(k, []).extend(v)

    def _fit_epochs(self, first: int, last: int):
        return fit_epochs(self.model, self.dataset, loop=self.decisions.loop, strategy=self.dist.strategy,
                          first=first, last=last, steps_per_epoch=self.t["epoch_steps"], callbacks=self.callbacks,
                          verbose=self.verbose)

    def _replan(self, done: int) -> None:
        """After the calibration epochs of a budget run (``done`` trained): the config, the schedule and the
        commit point follow the plan; the model continues from the committed weights, traced again."""
        t = self.t
        t["steps"] = self.plan.steps
        refit_schedule(self.schedule, self.cfg)
        per_epoch, first = self.budget.timing()
        self.log(f"[train] --minutes {t['minutes']:g}: epochs of {t['epoch_steps']} steps take {per_epoch:.2f} s "
                 f"(the first {first:.1f} s, compiling) -> {t['steps']} steps ({self.plan.epochs} epochs)")
        if self.dist.chief:
            rundir.write_config(self.run_dir, self.cfg)
            if done > self.start_epoch:  # the commit point names the plan from now on
                rundir.amend_state(self.run_dir, self.plan.state_keys(), self.need)
        if self.plan.epochs > done:
            committed = rundir.read_state(self.run_dir) if self.cfg["optimizer"]["use_ema"] else None
            if committed:  # fit ended by writing the EMA into the weights
                self.model.load_weights(self.run_dir / rundir.CHECKPOINT / committed["weights"])
            self.model.make_train_function(force=True)  # traced again with the refitted schedule

    def _log_start(self) -> None:
        import keras

        t, d, dist = self.t, self.decisions, self.dist
        batch = t["batch_size"]
        steps = f"(fitted to {t['minutes']:g} minutes)" if self.calibrate else t["steps"]
        self.log(f"[train] {self.cfg['model']['preset']} x{self.cfg['model']['scale']}, "
                 f"{self.model.count_params():,d} parameters; backend {self.backend}; "
                 f"{dist.name} with {dist.replicas} replica(s){' (chief)' if dist.multi_worker and dist.chief else ''}, "
                 f"loop: {'model.fit' if d.loop == 'fit' else 'strategy.run'}, input: {d.pipeline}; batch {batch} "
                 f"({batch // dist.replicas} per replica), patch {self.cfg['data']['patch_size']}; steps "
                 f"{self.start_step}..{steps} in epochs of {t['epoch_steps']}; "
                 f"policy {keras.config.dtype_policy().name}; run dir {self.run_dir}")

    # ---- 7. the end

    def finish(self) -> TrainResult:
        chief, model = self.dist.chief, self.model
        steps = int(np.asarray(model.optimizer.iterations.numpy()))
        if chief:  # the loop ended by finalize_variable_values: EMA weights are now the model's
            rundir.write_model(self.run_dir, model_bytes(model, weight_values(model, use_ema=False), self.save_clone),
                               self.need)
        ckpt = self.ckpt_cb
        summary = run_summary(
            self.cfg, model, backend=self.backend, distribution=self.dist.name, replicas=self.dist.replicas,
            loop=self.decisions.loop, pipeline=self.decisions.pipeline, steps=steps,
            session_steps=steps - self.start_step, fit_s=self.fit_s, train_s=self.stats.train_seconds,
            validation_s=self.val_cb.seconds, checkpoint_s=ckpt.seconds if ckpt else None,
            wall_s=self.wall_offset + (time.monotonic() - self.t_begin), resumed=self.resumed,
            best_psnr=None if ckpt is None or ckpt.best == -float("inf") else ckpt.best,
            best_epoch=None if ckpt is None else ckpt.best_epoch, val_sets=self.val_sets, history=self.history,
            accelerators=self.accelerators)
        if not chief:
            return TrainResult(self.run_dir, model, self.dist.strategy, [], summary, self.resumed)
        rundir.write_summary(self.run_dir, summary, self.need)
        self.log(f"[done] {steps} steps; this session {summary['session_steps']} steps in {self.fit_s:.0f} s "
                 f"({summary['patches_per_s']} patches/s training); best val PSNR {summary['best_val_psnr']}; "
                 f"model: {self.run_dir / rundir.MODEL}")
        return TrainResult(self.run_dir, model, self.dist.strategy, rundir.read_history(self.run_dir / rundir.HISTORY),
                           summary, self.resumed)
