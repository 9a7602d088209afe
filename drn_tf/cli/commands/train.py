"""``drn train``: train a DRN model from a YAML config (see :mod:`drn_tf.train.engine`, the config in
:mod:`drn_tf.train.config`)."""

from __future__ import annotations

import argparse
import contextlib
import errno
from pathlib import Path

DESCRIPTION = """\
Train a DRN model with model.fit on the Keras backend of KERAS_BACKEND
(tensorflow or jax; one engine, the same files). The config file
(training/configs/*.yaml) sets everything; options below override it, and
--set section.key=value overrides any key. TensorFlow: several GPUs ->
MirroredStrategy; TF_CONFIG with several workers -> MultiWorkerMirroredStrategy
(start the same command on every worker, with a run directory all of them can
read); else one device. JAX: several local devices -> keras.distribution
DataParallel; the input is the numpy pipeline and TensorFlow is not needed.
The run directory gets config.yaml (resolved), history.csv, tensorboard/
(when TensorFlow is importable), checkpoint/, last.keras, best.keras and
model.keras; a checkpoint resumes under either backend.

Resuming: if RUN_DIR holds a checkpoint, the same command continues from it
(at most the epoch in progress is lost when a run is killed). --fresh starts
over. Raise train.steps to train a finished run further."""

EPILOG = """\
examples:
  drn train --config training/configs/drn_x2.yaml
  drn train --config training/configs/drn_s_x2.yaml --steps 1000 --out runs/quick
  drn train --config training/configs/drn_x3.yaml --init-from runs/drn_x2/model.keras
  drn train --config training/configs/drn_x2.yaml --set optimizer.use_ema=true --set schedule.name=step
  drn train --config training/configs/drn_x2.yaml --print-config
  KERAS_BACKEND=jax drn train --preset drn_x2 --init-from drn_x2 --minutes 9 --out runs/gpu
  tensorboard --logdir runs/drn_x2/tensorboard;  drn plot runs/drn_x2

config keys (section.key = default: meaning):
"""


def add_parser(sub, help_text):
    from drn_tf.train.config import config_help

    p = sub.add_parser(
        "train",
        help=help_text,
        description=DESCRIPTION,
        epilog=EPILOG + config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML config (default: the built-in defaults, i.e. drn_x2)")
    p.add_argument("--out", help="run directory (default: runs/<config name>)")
    p.add_argument("--data", metavar="DIR",
                   help="data root that relative data paths resolve against (default: data.root, $DRN_DATA or ../shared/data)")
    p.add_argument("--train", nargs="+", metavar="DIR", help="HR training folders (data.train); relative ones are looked up "
                   "under the data root, then in the working directory")
    p.add_argument("--val", nargs="*", metavar="DIR", help="validation folders (data.val), looked up like --train; "
                   "none: no validation")
    p.add_argument("--preset", help="model.preset, e.g. drn_s_x2")
    p.add_argument("--init-from", metavar="PATH",
                   help="start from this .keras file, run directory, .weights.h5 or preset: matching layers by "
                        "name and shape, the upsampler skipped unless the scale is the same (model.init_from)")
    p.add_argument("--steps", type=int, help="train.steps")
    p.add_argument("--minutes", type=float, help="train.minutes: wall-clock budget from the start of the run (data "
                   "loading included); the step count is fitted to it after 3 epochs (warm-up + cosine over it), "
                   "the run stops in time with everything saved")
    p.add_argument("--epoch-steps", type=int, help="train.epoch_steps (checkpoint/validation interval)")
    p.add_argument("--batch-size", type=int, help="train.batch_size (global)")
    p.add_argument("--patch-size", type=int, help="data.patch_size (LR)")
    p.add_argument("--lr", type=float, help="optimizer.learning_rate")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--mixed-precision", nargs="?", const=True, metavar="POLICY",
                   help="mixed precision, no value: the fast one here (mixed_float16 on GPU, "
                   "mixed_bfloat16 on a CPU with AVX512-BF16/AMX, else float32); or the policy named")
    p.add_argument("--set", action="append", default=[], metavar="SEC.KEY=VALUE",
                   help="override any config key (YAML value), repeatable")
    p.add_argument("--strategy", default="auto", choices=["auto", "default", "mirrored", "multi-worker"],
                   help="distribution strategy (default: auto)")
    p.add_argument("--cpu-replicas", type=int, default=0, metavar="N",
                   help="split the CPU into N logical devices and use MirroredStrategy over them (testing)")
    p.add_argument("--fresh", action="store_true", help="discard the run directory's checkpoint and start over")
    p.add_argument("--verbose", default="auto", choices=["auto", "0", "1", "2"],
                   help="Keras verbosity: 1 progress bar, 2 one line per epoch (auto: 1 on a terminal)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def build_config(args):
    from drn_tf.train.config import load_config, resolve_config

    over: dict = {}

    def put(sec, key, value):
        if value is not None:
            over.setdefault(sec, {})[key] = value

    put("model", "preset", args.preset)
    put("model", "init_from", args.init_from)
    put("data", "root", args.data)
    put("data", "train", args.train)
    put("data", "val", args.val)
    put("data", "patch_size", args.patch_size)
    put("train", "steps", args.steps)
    put("train", "minutes", args.minutes)
    put("train", "epoch_steps", args.epoch_steps)
    put("train", "batch_size", args.batch_size)
    put("train", "seed", args.seed)
    put("train", "mixed_precision", args.mixed_precision)
    put("optimizer", "learning_rate", args.lr)
    cfg = load_config(args.config, overrides=over, sets=args.set)
    return resolve_config(cfg)


def run(args):
    from drn_tf.cli.base import UserError
    from drn_tf.train.config import ConfigError, dump_config
    from drn_tf.train.state import DiskSpaceError

    try:
        cfg = build_config(args)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if args.config else cfg["model"]["preset"])
    if args.cpu_replicas < 0:
        raise UserError("--cpu-replicas must be >= 0")
    from drn_tf.train.engine import train

    verbose = args.verbose if args.verbose == "auto" else int(args.verbose)
    try:
        with one_line_warnings():
            train(cfg, out, fresh=args.fresh, verbose=verbose, strategy=args.strategy,
                  cpu_replicas=args.cpu_replicas)
    except (ConfigError, DiskSpaceError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise UserError(f"{exc.filename or out}: no space left on device") from None
    return 0


@contextlib.contextmanager
def one_line_warnings():
    """Warnings of drn_tf (skipped images, ...) printed once each as ``drn train: warning: ...``;
    those of other packages as Python prints them."""
    import sys
    import warnings

    ours = str(Path(__file__).resolve().parents[2])  # the drn_tf package folder
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if str(filename).startswith(ours) and issubclass(category, UserWarning):
            print(f"drn train: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
