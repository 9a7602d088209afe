"""Image writing: uint8 arrays to files, atomically, never clobbering by accident.

Reading lives in :func:`drn_tf.data.read_image`. Here: format choice from a
file extension, conversion of ``(H, W[, 1|2|3|4])`` arrays to PIL modes, and
:func:`save_image`, which writes to a temporary file in the target folder and
renames it into place, so a failed or interrupted write never leaves a
partial or empty output file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

# extension -> PIL format name
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
    ".ppm": "PPM",
    ".pgm": "PPM",
}
# --format choices -> extension
FORMAT_EXTENSIONS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp"}
# formats that keep an alpha channel
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}


class ImageWriteError(OSError):
    """An output file that could not be written; the message names it and the reason."""


def format_for(path) -> str:
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise ImageWriteError(f"{path}: unknown image extension {ext!r} (use one of {', '.join(sorted(FORMATS))})")
    return FORMATS[ext]


def to_pil(array: np.ndarray, fmt: str):
    """uint8 array -> (PIL image, note or None). Alpha is dropped (with a
    note) for formats that cannot store it; grey stays grey."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    note = None
    if a.ndim == 3 and a.shape[-1] in (2, 4) and fmt not in _ALPHA_FORMATS:
        a = a[..., :-1]
        if a.shape[-1] == 1:
            a = a[..., 0]
        note = f"{fmt} cannot store transparency; alpha channel dropped"
    if a.ndim == 2:
        mode = "L"
    elif a.shape[-1] == 2:
        mode = "LA"
        if fmt == "WEBP":
            a = np.concatenate([np.repeat(a[..., :1], 3, axis=-1), a[..., 1:]], axis=-1)
            mode = "RGBA"
    elif a.shape[-1] == 3:
        mode = "RGB"
    elif a.shape[-1] == 4:
        mode = "RGBA"
    else:
        raise ValueError(f"cannot write an image of shape {array.shape}")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode), note


def save_image(array: np.ndarray, path, *, fmt: str | None = None, overwrite: bool = False, quality: int = 95):
    """Write uint8 ``array`` to ``path`` atomically; returns a note (str) or None.

    Raises :class:`FileExistsError` if ``path`` exists and not ``overwrite``,
    :class:`ImageWriteError` for anything else that stops the write. The
    image is written to a temporary file in the same folder and renamed into
    place; on any failure the temporary file is removed.
    """
    path = Path(path)
    fmt = fmt or format_for(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)")
    im, note = to_pil(array, fmt)
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write to folder {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            kwargs = {}
            if fmt in ("JPEG", "WEBP"):
                kwargs["quality"] = quality
            if fmt == "JPEG":
                kwargs["subsampling"] = 0 if quality >= 90 else 2
            im.save(f, format=fmt, **kwargs)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() refuses to replace an existing file: no race with another writer
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)") from None
            except OSError:  # file system without hard links
                if path.exists():
                    raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)") from None
                os.replace(tmp, path)
            if os.path.exists(tmp):
                os.unlink(tmp)
    except FileExistsError:
        _remove(tmp)
        raise
    except (OSError, ValueError) as exc:
        _remove(tmp)
        raise ImageWriteError(f"{path}: cannot write: {getattr(exc, 'strerror', None) or exc}") from None
    except BaseException:
        _remove(tmp)
        raise
    return note


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(tmp):
    try:
        os.unlink(tmp)
    except OSError:
        pass
