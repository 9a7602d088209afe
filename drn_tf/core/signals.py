"""Ctrl-C and SIGTERM for the ``drn`` commands: one rule, set up once at the command line's entry.

* :func:`command_signals` (entered by :func:`drn_tf.cli.main.main` before anything heavy is imported):
  Ctrl-C raises KeyboardInterrupt and SIGTERM raises :class:`Terminated`, so ``finally`` blocks and
  ``except BaseException`` cleanups (temporary files) run; ``main`` then prints one line and exits
  130 or 143.
* :func:`exit_at_once` (around a library's import: TensorFlow's, Apache Beam's): an exception raised
  in the middle of an import can be swallowed by the import machinery's own ``except`` clauses (the
  command then ran on as if nothing happened), and there is nothing to clean up yet, so there the
  signal prints the line and ends the process at once, with the same status.
* :func:`received` tells which of the two came, for code that gets the interruption back wrapped in
  another exception (a Beam runner's).

Without :func:`command_signals` (the library used from Python), :func:`cleanup_on_sigterm` still
turns SIGTERM into :class:`Terminated` for its block, and :func:`exit_at_once` holds the signal back
until the import is done and raises it then (the process is the caller's: it is not ended).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it
WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM under :func:`command_signals` / :func:`cleanup_on_sigterm`:
    ``finally`` blocks and ``except BaseException`` cleanups (temporary files) run, then ``drn``
    (:func:`drn_tf.cli.main.main`) exits 143 (128 + SIGTERM)."""


class _State:
    prefix = "drn"  # the line's start: "drn upscale"
    stderr_fd = None  # a duplicate of the terminal's stderr (fd 2 may be silenced meanwhile)
    received: list = []  # signals that came under command_signals / cleanup_on_sigterm
    active = False  # inside command_signals


def received(since: int = 0) -> int | None:
    """The last SIGINT / SIGTERM that reached this process's handlers after the first ``since`` of them
    (:func:`count`), or None."""
    return _State.received[-1] if len(_State.received) > since else None


def count() -> int:
    """How many SIGINT / SIGTERM reached this process's handlers so far (a mark for :func:`received`)."""
    return len(_State.received)


def exception_for(signum: int) -> BaseException:
    """KeyboardInterrupt for SIGINT, :class:`Terminated` for SIGTERM."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _raise(signum, frame):
    _State.received.append(signum)
    raise exception_for(signum)


def _exit_now(signum, frame):
    """One line on the terminal's stderr, then the process ends with 130 / 143."""
    _State.received.append(signum)
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed stdout: nothing to keep
        pass
    fd = _State.stderr_fd if _State.stderr_fd is not None else 2
    try:
        os.write(fd, f"{_State.prefix}: {WORDS[signum]}\n".encode())
    except OSError:
        pass
    os._exit(EXIT_STATUS[signum])


@contextlib.contextmanager
def _handling(handlers: dict):
    """``{signum: handler}`` inside the block, the previous handlers after."""
    previous = {}
    try:
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals alone
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def command_signals(prefix: str = "drn"):
    """The rule of a ``drn`` command (see the module's text): Ctrl-C -> KeyboardInterrupt, SIGTERM ->
    :class:`Terminated` for the block; ``prefix`` starts the line said when a signal ends the process
    at once (``drn upscale: interrupted``)."""
    saved = (_State.prefix, _State.stderr_fd, _State.received, _State.active)
    _State.prefix, _State.received, _State.active = prefix, [], True
    try:
        _State.stderr_fd = os.dup(2)
    except OSError:
        _State.stderr_fd = None
    try:
        with _handling({signal.SIGINT: _raise, signal.SIGTERM: _raise}):
            yield
    finally:
        if _State.stderr_fd is not None:
            os.close(_State.stderr_fd)
        _State.prefix, _State.stderr_fd, _State.received, _State.active = saved


def cleanup_on_sigterm():
    """Turn SIGTERM (``kill``, ``timeout``) into :class:`Terminated` for the block (what
    :func:`command_signals` does for a whole command; kept for callers that run without it)."""
    return _handling({signal.SIGTERM: _raise})


@contextlib.contextmanager
def exit_at_once():
    """Inside the block (a library's import), Ctrl-C and SIGTERM end a ``drn`` command at once with one
    line and 130 / 143, instead of an exception the import could swallow; the handlers before it after.
    Outside a command (the library used from Python) they are held back and raised after the block."""
    if _State.active:
        with _handling({signal.SIGINT: _exit_now, signal.SIGTERM: _exit_now}):
            yield
        return
    pressed = []
    handlers = {signal.SIGINT: lambda signum, frame: pressed.append(signum)}
    if signal.getsignal(signal.SIGTERM) is _raise:  # SIGTERM likewise, under cleanup_on_sigterm
        handlers[signal.SIGTERM] = handlers[signal.SIGINT]
    with _handling(handlers):
        yield
    if pressed:
        raise exception_for(signal.SIGTERM if signal.SIGTERM in pressed else signal.SIGINT)


_deferred_sigint = exit_at_once  # the name drn_tf.models.backend imports
