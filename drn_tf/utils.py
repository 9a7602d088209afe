"""Small helpers shared by the commands and the library."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Silence C/C++ output on file descriptor 2 (TensorFlow's start-up and
    converter chatter, ``failed call to cuInit`` on machines without a GPU)
    for the duration of the block. Python exceptions still propagate;
    ``DRN_VERBOSE=1`` disables the silencing."""
    if os.environ.get("DRN_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def parse_size(text, error=ValueError) -> tuple[int, int] | None:
    """``"HxW"`` -> ``(H, W)`` of positive ints; None and tuples pass through.

    Raises ``error`` (e.g. the caller's user-error class) with a message that
    names the expected form.
    """
    if text is None or isinstance(text, tuple):
        return text
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise error(f"size must look like HxW, e.g. 256x256; got {text!r}") from None
    if h < 1 or w < 1:
        raise error(f"size must be positive, got {text!r}")
    return h, w
