"""Small helpers shared by the commands and the library."""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import sys
from pathlib import Path


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


def assets_dir() -> Path:
    """Folder of the bundled files (trained ``.keras`` models, the demo photo).

    An installed package (wheel, sdist) carries them as package data in
    ``drn_tf/assets/`` (pyproject.toml maps the checkout's top-level
    ``assets/`` there); a checkout or an editable install reads the top-level
    ``assets/`` next to the package."""
    from importlib.resources import files

    packaged = files("drn_tf") / "assets"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "assets"


def default_cache_dir() -> Path:
    """The user cache folder (cached LR images, converted TFLite/ONNX/OpenVINO files): ``$DRN_CACHE_DIR``, else
    ``~/.cache/drn_tf``."""
    return Path(os.environ.get("DRN_CACHE_DIR", Path.home() / ".cache" / "drn_tf"))


def default_data_root() -> Path:
    """The project's data folder (``train/``, ``benchmark/``): ``$DRN_DATA``, else ``../shared/data``
    from the working directory, else ``shared/data`` beside the checkout."""
    env = os.environ.get("DRN_DATA")
    if env:
        return Path(env)
    here = Path("../shared/data")
    if here.is_dir():
        return here.resolve()
    return (Path(__file__).resolve().parents[3] / "shared" / "data").resolve()


def write_atomic(path, data: bytes | str, *, overwrite: bool = True, parents: bool = True) -> Path:
    """Write ``data`` (bytes or text) to ``path`` through a temporary file in the same folder
    (``.NAME.tmpPID``, flushed to disk) and a rename: readers, and a process killed at any moment,
    never see a partial file. On any failure (a full disk, an interrupt, SIGTERM's
    :class:`~drn_tf.core.signals.Terminated`) the temporary file is removed and the error re-raised.

    The one way the project writes a file (checkpoints, reports, exports, images, figures).
    ``overwrite=False``: an existing ``path`` is never replaced (:class:`FileExistsError`), also when
    another writer creates it meanwhile (the file is hard-linked into place, which refuses an existing
    name). ``parents``: create missing parent folders (else the write fails)."""
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and path.exists():
        raise FileExistsError(errno.EEXIST, "file exists", str(path))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w" if isinstance(data, str) else "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if path.exists():
                    raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
                os.replace(tmp, path)
            tmp.unlink(missing_ok=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "avx_vnni")


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS` (the ones that matter for oneDNN/XNNPACK speed) this CPU has."""
    have = set((_cpuinfo_field("flags") or "").split())
    return [f for f in CPU_FLAGS if f in have]


def cpu_has_bf16(flags=None) -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX-BF16): where mixed_bfloat16 makes training faster."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_int(name: str, value, low: int | None = None, high: int | None = None, error=ValueError) -> int:
    """``value`` as an int within ``[low, high]``, else ``error`` naming ``name``.

    Accepts ints and integral floats (``2.0`` from a JSON/YAML config), not bools or strings,
    so a crafted config fails here, before anything is built from it."""
    import math
    import numbers

    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or int(value) != value):
        raise error(f"{name} must be an integer, got {value!r}")
    return _check_range(name, int(value), low, high, error)


def _check_range(name, value, low, high, error):
    if low is not None and value < low:
        raise error(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise error(f"{name} must be <= {high}, got {value}")
    return value


def check_float(name: str, value, low: float | None = None, high: float | None = None, error=ValueError) -> float:
    """``value`` as a finite float within ``[low, high]``, else ``error`` naming ``name``."""
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise error(f"{name} must be a finite number, got {value!r}")
    return _check_range(name, float(value), low, high, error)


def check_choice(name: str, value, choices, error=ValueError):
    """``value`` if it is one of ``choices`` (compared by equality, type-checked: no ``True == 1``)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value
