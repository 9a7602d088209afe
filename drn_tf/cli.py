"""The ``drn`` command: one entry point, one module per subcommand.

Each subcommand lives in ``drn_tf/commands/<name>.py``, is listed in
:data:`COMMANDS` and exposes ``add_parser(subparsers, help_text)``
(registering its arguments and ``func``). A module may set
``NEEDS_BACKEND = False`` when it never touches Keras, or when it starts the
backend itself (:func:`import_backend_quietly`) after checking its arguments
and output paths, so that mistakes are reported in a fraction of a second.
Only the module of the command being run is imported, so ``import drn_tf``
and ``drn --help`` stay light.

Exits: user errors (:class:`UserError`) print one line ``drn <cmd>: error:
...`` and exit 2, never a traceback; Ctrl-C (even while TensorFlow imports)
exits 130 with one line; SIGTERM, for commands run under
:func:`cleanup_on_sigterm`, removes their temporary files and exits 143; a
closed stdout (``drn ... | head``) stops the command quietly with 141, as
SIGPIPE does for other unix tools.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
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
    "beam": "batch upscaling on Apache Beam (RunInference; DirectRunner, Dataflow, Flink, Spark)",
}


class UserError(Exception):
    """An error in what the user asked for: printed as one line, exit status 2."""


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM under :func:`cleanup_on_sigterm`:
    ``finally`` blocks and ``except BaseException`` cleanups (temporary files)
    run, then :func:`main` exits 143 (128 + SIGTERM)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _handling(signum, handler):
    """``handler`` for signal ``signum`` inside the block, the previous one after."""
    try:
        previous = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)


def cleanup_on_sigterm():
    """Turn SIGTERM (``kill``, ``timeout``) into :class:`Terminated` for the block."""
    return _handling(signal.SIGTERM, _raise_terminated)


_BACKEND_STARTED = False


def _keras_backend_name() -> str:
    """The backend Keras will pick, without importing it (env, then keras.json)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    import json

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as fh:
            return str(json.load(fh).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _optional_imports_of_keras() -> tuple[str, ...]:
    """Packages that Keras/TensorFlow import at start-up only if installed, for
    features the commands do not use: matplotlib (Keras's plotting helpers;
    ~0.3 s), IPython (Keras's notebook display; ~0.2 s) and, on the TensorFlow
    backend, JAX (TFLite's JAX converter; ~0.4 s). Commands that plot import
    matplotlib themselves, later; a package already imported is left alone."""
    names = ["matplotlib", "IPython"]
    if _keras_backend_name() == "tensorflow":
        names.append("jax")
    return tuple(n for n in names if n not in sys.modules)


@contextlib.contextmanager
def _unimportable(*names):
    """Make ``import NAME`` raise ImportError inside the block (what the
    importers above do when the package is not installed); afterwards the
    packages import normally again."""
    for name in names:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in names:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


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

    with quiet_stderr(), _unimportable(*_optional_imports_of_keras()), _deferred_sigint():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow  # noqa: F401
        keras.ops.zeros((1,))


@contextlib.contextmanager
def _deferred_sigint():
    """Hold Ctrl-C (and, under :func:`cleanup_on_sigterm`, SIGTERM) back during the block and raise
    KeyboardInterrupt (:class:`Terminated`) after it.

    A KeyboardInterrupt raised in the middle of TensorFlow's import can be
    swallowed by the import machinery's own ``except`` clauses (the command then
    ran on as if nothing happened); noted here, it is raised once the import is
    done, a second or two later, where :func:`main` turns it into one line."""
    pressed = []
    with _handling(signal.SIGINT, lambda signum, frame: pressed.append(signum)):
        if signal.getsignal(signal.SIGTERM) is _raise_terminated:  # SIGTERM likewise, under cleanup_on_sigterm
            with _handling(signal.SIGTERM, lambda signum, frame: pressed.append(signum)):
                yield
        else:
            yield
    if signal.SIGTERM in pressed:
        raise Terminated()
    if pressed:
        raise KeyboardInterrupt


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
    from drn_tf import __version__

    parser.add_argument("--version", action="version", version=f"drn-tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=help_text)
            continue
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
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _command_in(argv)
    prefix = f"drn {name}" if name else "drn"
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        module = sys.modules.get(getattr(args.func, "__module__", ""), None)
        if getattr(module, "NEEDS_BACKEND", True):
            import_backend_quietly()
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return rc
    except UserError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prefix}: terminated", file=sys.stderr)
        return 143
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


if __name__ == "__main__":
    # `python -m drn_tf.cli`: run the imported module's main, so that UserError & co. are the classes
    # the commands raise (this file as __main__ would define second copies)
    from drn_tf.cli import main as _main

    sys.exit(_main())
