"""Signals for long commands: SIGTERM turned into an exception that runs cleanups, and Ctrl-C / SIGTERM
held back while a library import (TensorFlow's) could swallow them."""

from __future__ import annotations

import contextlib
import signal


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM under :func:`cleanup_on_sigterm`:
    ``finally`` blocks and ``except BaseException`` cleanups (temporary files)
    run, then ``drn`` (:func:`drn_tf.cli.main`) exits 143 (128 + SIGTERM)."""


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
