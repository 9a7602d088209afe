"""Image writing: uint8 arrays to files, atomically, never clobbering by accident.

Reading lives in :func:`drn_tf.data.read_image`. Here: format choice from a
file extension, conversion of ``(H, W[, 1|2|3|4])`` arrays to PIL modes, the
metadata worth carrying from an input to its output (:func:`read_metadata`:
ICC profile, EXIF, DPI) and :func:`save_image`, which writes to a temporary
file in the target folder and renames it into place, so a failed or
interrupted write never leaves a partial or empty output file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

# image files that inputs (folders, globs) are searched for
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
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
# metadata each output format can store (PIL save() keywords)
_METADATA_KEYS = {
    "PNG": ("icc_profile", "exif", "dpi"),
    "JPEG": ("icc_profile", "exif", "dpi"),
    "WEBP": ("icc_profile", "exif"),
    "TIFF": ("icc_profile", "dpi"),
    "BMP": ("dpi",),
}
DEFAULT_QUALITY = 95  # JPEG/WebP
_ORIENTATION = 0x0112
_EXIF_IFD, _EXIF_WIDTH, _EXIF_HEIGHT = 0x8769, 0xA002, 0xA003


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
    if fmt == "GIF":
        gif = "GIF stores at most 256 colours: the output is palette-quantised (PNG keeps every colour)"
        note = f"{note}; {gif}" if note else gif
    return Image.fromarray(np.ascontiguousarray(a), mode=mode), note


def read_metadata(path) -> dict:
    """What an output should inherit from the input ``path``: ``icc_profile``
    (bytes), ``exif`` (a ``PIL.Image.Exif``; its orientation tag is reset,
    because :func:`drn_tf.data.read_image` already turned the pixels upright)
    and ``dpi``. Only the header is read; an unreadable file gives ``{}``."""
    from PIL import Image

    meta: dict = {}
    try:
        with Image.open(path) as im:
            if im.info.get("icc_profile"):
                meta["icc_profile"] = im.info["icc_profile"]
            if im.info.get("dpi"):
                meta["dpi"] = tuple(float(v) for v in im.info["dpi"][:2])
            # an EXIF block (JPEG, PNG, WebP); a TIFF's own tags describe its layout, not kept
            exif = im.getexif() if im.info.get("exif") else None
    except Exception:  # noqa: BLE001 - the reader reports unreadable files
        return meta
    if exif is not None and len(exif):
        if exif.get(_ORIENTATION, 1) != 1:
            exif[_ORIENTATION] = 1
        meta["exif"] = exif
    return meta


def _metadata_kwargs(meta: dict | None, fmt: str, im) -> tuple[dict, str | None]:
    """PIL save() keywords carrying ``meta`` into format ``fmt`` for image ``im``; and a note."""
    if not meta:
        return {}, None
    keys = _METADATA_KEYS.get(fmt, ())
    kwargs, note = {}, None
    profile = meta.get("icc_profile")
    if profile and "icc_profile" in keys:
        space = profile[16:20].decode("latin-1").strip().upper() if len(profile) >= 20 else ""
        wanted = "GRAY" if im.mode in ("L", "LA") else "RGB"
        if space == wanted:
            kwargs["icc_profile"] = profile
        else:
            note = f"the input's {space or 'unknown'} ICC profile does not fit the {im.mode} output; not kept"
    exif = meta.get("exif")
    if exif is not None and "exif" in keys:
        ifd = exif.get_ifd(_EXIF_IFD)
        if _EXIF_WIDTH in ifd or _EXIF_HEIGHT in ifd:  # the pixel size the EXIF states: the new one
            ifd[_EXIF_WIDTH], ifd[_EXIF_HEIGHT] = im.size
        kwargs["exif"] = exif.tobytes()
    if meta.get("dpi") and "dpi" in keys:
        kwargs["dpi"] = meta["dpi"]
    return kwargs, note


def save_image(
    array: np.ndarray,
    path,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    quality: int = DEFAULT_QUALITY,
    metadata: dict | None = None,
):
    """Write uint8 ``array`` to ``path`` atomically; returns a note (str) or None.

    ``quality`` (1-100) applies to JPEG and WebP. ``metadata`` (from
    :func:`read_metadata`) is written where the format can store it (ICC
    profile, EXIF, DPI). Raises :class:`FileExistsError` if ``path`` exists
    and not ``overwrite``, :class:`ImageWriteError` for anything else that
    stops the write. The image is written to a temporary file in the same
    folder and renamed into place; on any failure (or an exception such as
    :class:`drn_tf.cli.Terminated` from SIGTERM) the temporary file is removed.
    """
    path = Path(path)
    fmt = fmt or format_for(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)")
    im, note = to_pil(array, fmt)
    meta_kwargs, meta_note = _metadata_kwargs(metadata, fmt, im)
    if meta_note:
        note = f"{note}; {meta_note}" if note else meta_note
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ImageWriteError(f"{path}: cannot write to folder {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            kwargs = dict(meta_kwargs)
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
