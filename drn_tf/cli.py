"""The ``drn`` command: one entry point, one module per subcommand.

Each subcommand lives in ``drn_tf/commands/<name>.py`` and exposes
``add_parser(subparsers)`` (registering its arguments and ``func``; a module
may set ``NEEDS_BACKEND = False`` when it never touches Keras) and is
imported only when ``drn`` runs, so ``import drn_tf`` stays light. User
errors (:class:`UserError`) print one line ``drn <cmd>: error: ...`` and exit
with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> one-line help; order is the order in ``drn --help``
COMMANDS = {
    "demo": "upscale a bundled sample photo with bicubic and DRN, write a comparison figure",
    "upscale": "upscale images, folders or globs (tiling, self-ensemble)",
    "evaluate": "PSNR/SSIM on benchmark folders by the literature's protocol",
    "train": "train a DRN model with model.fit (one device, MirroredStrategy, multi-worker)",
    "plot": "draw loss and validation PSNR curves of a training run",
    "export": "export to SavedModel (TF Serving) or TFLite (Android), with a quality/latency report",
    "benchmark": "latency, throughput and achieved GFLOP/s against this machine's measured peak",
    "info": "architecture summary, parameter count and multiply-adds of a preset",
}


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


_BACKEND_STARTED = False


def import_backend_quietly():
    """Import Keras (and TensorFlow) and create the first tensor with the
    C-level start-up chatter on stderr silenced (oneDNN notices, ``failed
    call to cuInit`` on machines without a GPU: logs that
    ``TF_CPP_MIN_LOG_LEVEL`` does not reach), so commands keep their one-line
    error contract. Python exceptions still propagate. ``DRN_VERBOSE=1``
    shows everything."""
    global _BACKEND_STARTED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _BACKEND_STARTED:
        return
    _BACKEND_STARTED = True
    from drn_tf.utils import quiet_stderr

    with quiet_stderr():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401
        keras.ops.zeros((1,))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drn",
        description="DRN super-resolution (Sun et al. 2019) for TensorFlow / Keras 3.",
        epilog="Run 'drn COMMAND --help' for the options of a command.",
    )
    from drn_tf import __version__

    parser.add_argument("--version", action="version", version=f"drn-tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        try:
            module = importlib.import_module(f"drn_tf.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"drn_tf.commands.{name}":
                raise
            p = sub.add_parser(name, help=f"(not implemented yet) {help_text}")
            p.set_defaults(func=_not_implemented(name))
            continue
        module.add_parser(sub, help_text)
    return parser


def _not_implemented(name):
    def run(args):
        raise UserError(f"'drn {name}' is not implemented in this version")

    return run


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = sys.modules.get(getattr(args.func, "__module__", ""), None)
    if getattr(module, "NEEDS_BACKEND", True):
        import_backend_quietly()
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"drn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
