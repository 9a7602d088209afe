"""The temporary files of ``drn beam`` (:mod:`drn_tf.inference.beam`), and the removal of those a stopped
run left: hidden outputs being written (``.NAME.<12 hex>.tmp`` beside the output, renamed when whole),
the failure records' ``beam-temp-_failures-*`` folder (Beam's ``WriteToText``) and local scratch
folders ``drn-beam-<pid>-*`` (decoding, encoding, a remote model's copy)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tempfile
import uuid

from apache_beam.io.filesystems import FileSystems

_TEMPORARY_OUTPUT = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
FAILURES_TEMP_PREFIX = "beam-temp-_failures-"  # WriteToText's folder for OUTPUT_DIR/_failures.jsonl


def temporary_name(name: str) -> str:
    """The hidden name an output ``name`` is written under before its rename: ``.NAME.<12 hex>.tmp``."""
    return f".{name}.{uuid.uuid4().hex[:12]}.tmp"


def scratch_prefix() -> str:
    """Prefix of this process's local scratch folders: ``drn-beam-<pid>-`` (:func:`sweep` removes those of
    processes that are gone)."""
    return f"drn-beam-{os.getpid()}-"


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(str(path)) in (None, "file")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process: alive
        return False
    return False


def sweep(output_dir, *, mine: bool = False) -> int:
    """Remove what stopped runs left: hidden temporary outputs (``.NAME.<12 hex>.tmp``) anywhere in
    ``output_dir``, the failure records' ``beam-temp-_failures-*`` folders in it, and local scratch
    folders ``drn-beam-<pid>-*`` of processes that are gone (``mine``: this process's too, once its
    pipeline has stopped). Returns how many were removed."""
    removed = 0
    out = str(output_dir).rstrip("/") or "/"
    if _is_local(out):
        for root, dirs, files in os.walk(out):
            for d in [d for d in dirs if root == out and d.startswith(FAILURES_TEMP_PREFIX)]:
                shutil.rmtree(os.path.join(root, d), ignore_errors=True)
                dirs.remove(d)
                removed += 1
            for f in files:
                if _TEMPORARY_OUTPUT.match(f):
                    with contextlib.suppress(OSError):
                        os.remove(os.path.join(root, f))
                        removed += 1
    else:
        patterns = [FileSystems.join(out, ".*.tmp"), FileSystems.join(out, "**", ".*.tmp"),
                    FileSystems.join(out, FAILURES_TEMP_PREFIX + "*", "*")]
        try:
            found = {m.path for r in FileSystems.match(patterns) for m in r.metadata_list}
        except Exception:  # noqa: BLE001 - nothing there yet, or not listable: nothing to remove
            found = set()
        stale = [f for f in found if _TEMPORARY_OUTPUT.match(posixpath.basename(f))
                 or posixpath.basename(posixpath.dirname(f)).startswith(FAILURES_TEMP_PREFIX)]
        with contextlib.suppress(Exception):
            FileSystems.delete(stale)
            removed += len(stale)
    scratch = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(scratch):
            m = re.match(r"drn-beam-(\d+)-", name)
            if m and ((mine and int(m.group(1)) == os.getpid()) or _pid_gone(int(m.group(1)))):
                shutil.rmtree(os.path.join(scratch, name), ignore_errors=True)
                removed += 1
    return removed


__all__ = ["FAILURES_TEMP_PREFIX", "scratch_prefix", "sweep", "temporary_name"]
