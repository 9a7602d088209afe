"""Helpers for tests that watch a child process from outside."""

from __future__ import annotations

import time
from pathlib import Path


def wait_for_library(proc, library: str = "libtensorflow", timeout: float = 120.0) -> None:
    """Return once ``proc`` has ``library`` mapped (it is being loaded: the import is under way), or it has
    ended, or ``timeout`` seconds have passed."""
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if library in maps.read_text():
                return
        except OSError:
            pass
        time.sleep(0.02)
