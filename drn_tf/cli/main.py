"""The ``drn`` command: one entry point, one module per subcommand.

Each subcommand lives in ``drn_tf/cli/commands/<name>.py``, is listed in
:data:`COMMANDS` and exposes ``add_parser(subparsers, help_text)``
(registering its arguments and ``func``). A module may set
``NEEDS_BACKEND = False`` when it never touches Keras, or when it starts the
backend itself (:func:`import_backend_quietly`) after checking its arguments
and output paths, so that mistakes are reported in a fraction of a second.
Only the module of the command being run is imported, so ``import drn_tf``
and ``drn --help`` stay light.

Exits: user errors (:class:`UserError`) print one line ``drn <cmd>: error:
...`` and exit 2, never a traceback. Signals, one rule for every command
(:func:`drn_tf.core.signals.command_signals`, set up before anything heavy is
imported): Ctrl-C exits 130 with one line ``drn <cmd>: interrupted``, SIGTERM
143 with ``drn <cmd>: terminated``, after the command's cleanups (temporary
files) ran; while a library is being imported (TensorFlow, Apache Beam) they
end the process at once, with the same line and status. A command that sets
its own handlers (``drn serve`` drains first) keeps them. A closed stdout
(``drn ... | head``) stops the command quietly with 141, as SIGPIPE does for
other unix tools.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from drn_tf.cli.base import UserError
from drn_tf.core.signals import EXIT_STATUS, WORDS, Terminated, command_signals

# name -> one-line help; order is the order in ``drn --help``
COMMANDS = {
    "demo": "upscale a bundled sample photo with bicubic and DRN, write a comparison figure",
    "upscale": "upscale images, folders or globs (tiling, self-ensemble)",
    "evaluate": "PSNR/SSIM on benchmark folders by the literature's protocol",
    "train": "train a DRN model with model.fit (one device, MirroredStrategy, multi-worker)",
    "plot": "draw loss and validation PSNR curves of a training run",
    "average": "average checkpoints of a run into one .keras model (checkpoint averaging)",
    "export": "export to SavedModel (TF Serving) or TFLite (Android), with a quality/latency report",
    "benchmark": "latency, throughput and achieved GFLOP/s against this machine's measured peak",
    "info": "architecture summary, parameter count and multiply-adds of a preset",
    "beam": "batch upscaling on Apache Beam (RunInference; DirectRunner, Dataflow, Flink, Spark)",
    "serve": "serve models over HTTP with KServe (TF Serving REST bodies, Open Inference Protocol, a page at /)",
}


def _command_in(argv) -> str | None:
    """The subcommand ``argv`` asks for (its first word), if it is one."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    return words[0] if words and words[0] in COMMANDS else None


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The ``drn`` parser. With ``argv`` naming a command, only that command's
    module is imported (the others get a placeholder with their help line)."""
    wanted = _command_in(argv) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="drn",
        description="DRN super-resolution (Sun et al. 2019) for TensorFlow / Keras 3.",
        epilog="Run 'drn COMMAND --help' for the options of a command.",
    )
    from drn_tf.core.version import VERSION

    parser.add_argument("--version", action="version", version=f"drn-tf {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(f"drn_tf.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"drn_tf.cli.commands.{name}":
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
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _command_in(argv)
    prefix = f"drn {name}" if name else "drn"
    with command_signals(prefix):
        return _main(argv, prefix)


def _main(argv, prefix: str) -> int:
    import signal

    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        module = sys.modules.get(getattr(args.func, "__module__", ""), None)
        if getattr(module, "NEEDS_BACKEND", True):
            from drn_tf.models.backend import import_backend_quietly

            import_backend_quietly()
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return rc
    except UserError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:
        signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
        print(f"{prefix}: {WORDS[signum]}", file=sys.stderr)
        return EXIT_STATUS[signum]
    except BrokenPipeError:
        # the reader of stdout went away (``drn ... | head``): stop quietly
        _discard_stdout()
        return 141


def _discard_stdout():
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
