"""Image writing: uint8 arrays to files, atomically, never clobbering by accident.

Reading lives in :func:`drn_tf.core.imageio.read_image`. Here: format choice from a
file extension, conversion of ``(H, W[, 1|2|3|4])`` arrays to PIL modes, the
metadata worth carrying from an input to its output (:func:`read_metadata`:
ICC profile, EXIF, DPI) and :func:`save_image`, which writes to a temporary
file in the target folder and renames it into place
(:func:`drn_tf.core.utils.write_atomic`), so a failed or interrupted write never leaves a partial or
empty output file.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path, PurePath

import numpy as np

from drn_tf.core.utils import write_atomic

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
    because :func:`drn_tf.core.imageio.read_image` already turned the pixels upright)
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
    :class:`drn_tf.cli.base.Terminated` from SIGTERM) the temporary file is removed.
    """
    path = Path(path)
    fmt = fmt or format_for(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)")
    note16 = None
    if np.asarray(array).dtype == np.uint16:
        data, array, note16 = _encode16(np.asarray(array), fmt, metadata)
        if data is not None:
            _write(path, data, overwrite)
            return None
    im, note = to_pil(array, fmt)
    if note16:
        note = f"{note16}; {note}" if note else note16
    meta_kwargs, meta_note = _metadata_kwargs(metadata, fmt, im)
    if meta_note:
        note = f"{note}; {meta_note}" if note else meta_note
    kwargs = dict(meta_kwargs)
    if fmt in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    if fmt == "JPEG":
        kwargs["subsampling"] = 0 if quality >= 90 else 2
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt, **kwargs)
    except (OSError, ValueError) as exc:
        raise ImageWriteError(f"{path}: cannot write: {getattr(exc, 'strerror', None) or exc}") from None
    _write(path, buf.getvalue(), overwrite)
    return note


def _write(path: Path, data: bytes, overwrite: bool) -> None:
    """``data`` to ``path`` atomically, with :func:`save_image`'s errors."""
    try:
        write_atomic(path, data, overwrite=overwrite, parents=False)
    except FileExistsError:
        raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)") from None
    except FileNotFoundError:
        raise ImageWriteError(f"{path}: cannot write to folder {path.parent}: no such folder") from None
    except (OSError, ValueError) as exc:
        raise ImageWriteError(f"{path}: cannot write: {getattr(exc, 'strerror', None) or exc}") from None


# ---------------------------------------------------------------- 16 bits per channel

_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


def png16(array: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """A 16-bit PNG of a uint16 ``(H, W[, 1|2|3|4])`` array (filter 0 rows, zlib level 6)."""
    import struct
    import zlib

    a = array[..., None] if array.ndim == 2 else array
    h, w, c = a.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    rows = np.zeros((h, 1 + w * c * 2), np.uint8)
    rows[:, 1:] = np.ascontiguousarray(a, dtype=">u2").view(np.uint8).reshape(h, -1)
    out = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, _PNG_COLOUR_TYPES[c], 0, 0, 0))]
    if icc_profile:
        out.append(chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    out += [chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)), chunk(b"IEND", b"")]
    return b"".join(out)


def _tiff16(array: np.ndarray) -> bytes | None:
    """A 16-bit TIFF: grey through PIL, colour through FFmpeg's TIFF encoder (None without :mod:`av`)."""
    from PIL import Image

    a = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    if a.ndim == 2:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(a.astype("<u2")), mode="I;16").save(buf, format="TIFF")
        return buf.getvalue()
    try:
        import av
    except ImportError:
        return None
    if a.shape[-1] == 2:
        a = np.concatenate([np.repeat(a[..., :1], 3, axis=-1), a[..., 1:]], axis=-1)
    fmt = "rgba64le" if a.shape[-1] == 4 else "rgb48le"
    ctx = av.CodecContext.create("tiff", "w")
    ctx.width, ctx.height, ctx.pix_fmt = a.shape[1], a.shape[0], fmt
    from fractions import Fraction

    ctx.time_base = Fraction(1, 1)
    packets = ctx.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format=fmt)) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def _encode16(array: np.ndarray, fmt: str, metadata: dict | None):
    """``(bytes or None, uint8 fallback or None, note)``: 16-bit PNG/TIFF bytes, else the 8-bit array
    :func:`save_image` writes instead (formats of 8 bits: JPEG, WebP, GIF, BMP)."""
    if fmt == "PNG":
        profile = (metadata or {}).get("icc_profile")
        return png16(array, profile), None, None
    if fmt == "TIFF":
        data = _tiff16(array)
        if data is not None:
            return data, None, None
    eight = np.floor(array.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    return None, eight, f"{fmt} output has 8 bits per channel; the 16-bit result was rounded to 8 bits"



# Refuse images above this many pixels before decoding (decompression bombs).
MAX_PIXELS = 200_000_000


class ImageReadError(ValueError):
    """An input file that is not a readable image; the message names the file and the reason."""


def header_size(path) -> tuple[int, int]:
    """``(width, height)`` an image file's header states (nothing decoded); :class:`ImageReadError`
    naming the file when there is no readable header."""
    Image, _, _ = _pil()
    path = _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the caller checks the size
            with Image.open(path) as im:
                return im.size
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise _read_error(path, exc) from None


def _check_file(path) -> Path:
    """``path`` when it is a non-empty regular file, else :class:`ImageReadError` saying what it is."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory")
    if not path.is_file():  # never opened: reading a FIFO would block
        raise ImageReadError(f"{path}: not a regular file (a FIFO, socket or device)")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    return path


def _read_error(path, exc: Exception) -> ImageReadError:
    """Pillow's failure to read ``path`` as one line: too many pixels, not an image, or its reason."""
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        return ImageReadError(f"{path}: refused, too many pixels ({exc})")
    reason = str(exc) or type(exc).__name__
    if "cannot identify image file" in reason:
        reason = "not an image file PIL can read"
    return ImageReadError(f"{path}: {reason}")


def _pil():
    from PIL import Image, ImageFile, ImageOps

    return Image, ImageFile, ImageOps


def read_image(path, mode: str = "keep", max_pixels: int = MAX_PIXELS, with_alpha: bool = False,
               keep_16bit: bool = False):
    """Read ``path`` as uint8 (uint16 for 16-bit images with ``keep_16bit``: grey through PIL, colour
    through FFmpeg's PNG/TIFF decoders, :mod:`av`; without it, 8 bits with a warning).

    ``mode="keep"`` gives ``(H, W, 3)`` for colour and ``(H, W, 1)`` for
    grey images; ``mode="rgb"`` always gives ``(H, W, 3)``. With
    ``with_alpha=True`` returns ``(image, alpha)`` where ``alpha`` is
    ``(H, W)`` uint8 or None. 16-bit images are scaled to 8 bits with a
    warning. Raises :class:`ImageReadError` with the file name and the reason
    for anything that is not a whole, readable image.
    """
    Image, ImageFile, ImageOps = _pil()
    path = _check_file(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageReadError(
                    f"{path}: {w}x{h} pixels is over the limit of {max_pixels} (possible decompression bomb); refused"
                )
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{path}: {im.format} with {frames} frames/pages; only the first is used", stacklevel=2)
            raw = [t.args[0] if isinstance(t.args, tuple) else t.args for t in (im.tile or [])[:1]]
            colour16 = im.mode in ("RGB", "RGBA", "LA") and raw and ";16" in str(raw[0])
            if colour16 and keep_16bit and frames == 1:
                deep = _read_colour16(path)
                if deep is not None:
                    image, alpha = deep
                    return (image, alpha) if with_alpha else image
            if colour16:  # 16-bit read as 8
                warnings.warn(f"{path}: 16-bit-per-channel {im.mode} image converted to 8 bits", stacklevel=2)
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            im.load()
            im = ImageOps.exif_transpose(im)
            image, alpha = _pil_to_arrays(im, path, keep_16bit)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise _read_error(path, exc) from None
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageReadError(f"{path}: image has no pixels")
    if mode == "rgb" and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    elif mode not in ("keep", "rgb"):
        raise ValueError(f"mode must be 'keep' or 'rgb', got {mode!r}")
    return (image, alpha) if with_alpha else image


def _read_colour16(path):
    """A 16-bit colour PNG/TIFF as ``(uint16 (H, W, 3|1), alpha uint16 or None)`` through FFmpeg's
    decoders (:mod:`av`); None when av is not installed (the caller reads 8 bits)."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            alpha = "a" in frame.format.name.replace("gray", "") or frame.format.name.startswith("ya")
            arr = frame.to_ndarray(format="rgba64le" if alpha else "rgb48le")
    except (av.FFmpegError, StopIteration, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot decode the 16-bit image: {exc}") from None
    if frame.format.name.startswith(("ya", "gray")):
        return arr[..., :1].copy(), (arr[..., 3].copy() if alpha else None)
    return (arr[..., :3].copy(), arr[..., 3].copy()) if alpha else (arr, None)


def _pil_to_arrays(im, path, keep_16bit: bool = False):
    """PIL image -> (uint8 array (H, W, 3|1), alpha (H, W) uint8 or None); 16-bit grey as uint16
    with ``keep_16bit``."""
    Image, _, _ = _pil()
    if keep_16bit and im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)[..., None], None
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        warnings.warn(f"{path}: {im.mode} image converted to 8 bits", stacklevel=3)
        arr = np.floor(np.clip(arr / top * 255.0, 0, 255) + 0.5).astype(np.uint8)
        return arr[..., None], None
    if im.mode == "F":
        arr = np.asarray(im).astype(np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        warnings.warn(f"{path}: floating-point image converted to 8 bits", stacklevel=3)
        return np.floor(np.clip(arr / top * 255.0, 0, 255) + 0.5).astype(np.uint8)[..., None], None
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("1", "L"):
        return np.asarray(im.convert("L"))[..., None], None
    if im.mode == "LA":
        arr = np.asarray(im)
        return arr[..., :1].copy(), arr[..., 1].copy()
    if im.mode in ("RGBA", "RGBa", "PA"):
        im = im.convert("RGBA")
        arr = np.asarray(im)
        return arr[..., :3].copy(), arr[..., 3].copy()
    if im.mode == "RGB" and getattr(im, "bits", 8) == 8:
        return np.asarray(im).copy(), None
    # CMYK, YCbCr, LAB, HSV, 48-bit RGB...: PIL's own conversion
    if im.mode not in ("RGB",):
        warnings.warn(f"{path}: {im.mode} image converted to RGB", stacklevel=3)
    return np.asarray(im.convert("RGB")).copy(), None


def is_image_name(relative) -> bool:
    """Whether a file found in a folder counts as an image input: an image extension
    (:data:`IMAGE_EXTENSIONS`), not hidden and not inside a hidden folder (``.thumbnails/``,
    macOS ``._NAME`` files). ``relative``: the path below the folder searched. The one rule of
    every folder walk (``drn upscale``, ``drn beam``, ``drn evaluate``, training data)."""
    parts = PurePath(relative).parts
    return bool(parts) and PurePath(relative).suffix.lower() in IMAGE_EXTENSIONS and not any(
        part.startswith(".") for part in parts)


def list_images(paths, recursive: bool = True) -> list[Path]:
    """Image files under the given files/folders (:func:`is_image_name`), sorted; folders are searched
    recursively. A file named directly is taken whatever its name."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.glob("*")
            found.extend(sorted(f for f in it if is_image_name(f.relative_to(p)) and f.is_file()))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return found
