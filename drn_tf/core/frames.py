"""Images of several frames: animated GIF / APNG / WebP and multi-page TIFF.

:func:`read_frames` gives every frame as a whole picture (PIL composites
GIF, APNG and WebP frames onto the canvas) with its duration, plus the loop
count and the disposal methods; :func:`save_frames` writes frames of the same
kind back, atomically, keeping what the output format can store and naming
what it cannot in one note. Single-frame images stay with
:func:`drn_tf.core.imageio.read_image` / :func:`~drn_tf.core.imageio.save_image`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drn_tf.core.imageio import MAX_PIXELS, ImageReadError, ImageWriteError, _write, format_for

# output format -> what it keeps of an animation (the rest is named in a note)
_KEEPS = {
    "GIF": {"frames", "durations", "loop", "disposal"},
    "PNG": {"frames", "durations", "loop", "disposal"},  # APNG
    "WEBP": {"frames", "durations", "loop"},
    "TIFF": {"frames"},
}


@dataclass
class Frames:
    """Every frame of a multi-frame image: uint8 ``(H, W, C)`` arrays (C = 1 grey, 2 grey+alpha,
    3 RGB, 4 RGBA; all frames alike), durations in ms, loop count (0: forever; None: not stated),
    disposal methods (None: not stated), the source format."""

    images: list = field(default_factory=list)
    durations: list = field(default_factory=list)
    loop: int | None = None
    disposal: list | None = None
    format: str = ""


def frame_count(path) -> int:
    """Frames/pages of an image file, from its header; 1 when it cannot be told."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1))
    except Exception:  # noqa: BLE001 - the readers report unreadable files
        return 1


def _array(im) -> np.ndarray:
    if im.mode in ("RGBA", "LA", "PA", "P") and (im.mode != "P" or "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L"))[..., None]
    return np.asarray(im.convert("RGB"))


def read_frames(path, max_pixels: int = MAX_PIXELS) -> Frames:
    """Every frame of ``path``; :class:`ImageReadError` naming the file for anything unreadable."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            n = int(getattr(im, "n_frames", 1))
            if w * h * n > max_pixels:
                raise ImageReadError(f"{path}: {n} frames of {w}x{h} pixels is over the limit of {max_pixels}; refused")
            out = Frames(loop=im.info.get("loop"), format=im.format or "")
            disposal = []
            for i in range(n):
                im.seek(i)
                im.load()
                out.images.append(_array(im))
                out.durations.append(int(im.info.get("duration", 0) or 0))
                d = getattr(im, "disposal_method", None) if im.format == "GIF" else im.info.get("disposal")
                disposal.append(d)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path}: {exc or type(exc).__name__}") from None
    if any(d is not None for d in disposal):
        out.disposal = [int(d or 0) for d in disposal]
    widest = max(a.shape[-1] for a in out.images)  # frames of mixed modes: all as the widest
    out.images = [_widen(a, widest) for a in out.images]
    return out


def _widen(a: np.ndarray, c: int) -> np.ndarray:
    if a.shape[-1] == c:
        return a
    rgb = np.repeat(a[..., :1], 3, axis=-1) if a.shape[-1] in (1, 2) else a[..., :3]
    if c == 4:
        alpha = a[..., -1:] if a.shape[-1] in (2, 4) else np.full(a.shape[:2] + (1,), 255, np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)
    return rgb


def save_frames(frames: Frames, path, *, fmt: str | None = None, overwrite: bool = False,
                quality: int = 95) -> str | None:
    """Write ``frames`` (their ``images`` already replaced by the upscaled ones) to ``path``
    atomically; returns a note naming what the format could not keep, or None."""
    from drn_tf.core.imageio import to_pil

    path = Path(path)
    fmt = fmt or format_for(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: output exists (pass --overwrite to replace it)")
    keeps = _KEEPS.get(fmt, set())
    if "frames" not in keeps:  # JPEG, BMP...: the first frame only
        from drn_tf.core.imageio import save_image

        note = save_image(frames.images[0], path, fmt=fmt, overwrite=overwrite, quality=quality)
        lost = f"{fmt} stores one frame: only the first of {len(frames.images)} frames was written"
        return f"{lost}; {note}" if note else lost
    pil = [to_pil(a, fmt)[0] for a in frames.images]
    kwargs: dict = {"save_all": True, "append_images": pil[1:]}
    if "durations" in keeps:
        kwargs["duration"] = list(frames.durations)
    if "loop" in keeps and frames.loop is not None:
        kwargs["loop"] = int(frames.loop)
    if "disposal" in keeps and frames.disposal is not None:
        kwargs["disposal"] = list(frames.disposal)
    if fmt == "PNG":
        kwargs["blend"] = 0  # whole composited frames: each replaces the canvas (APNG_BLEND_OP_SOURCE)
    if fmt == "WEBP":
        kwargs["quality"] = quality
    if fmt == "GIF":
        pil = [im.convert("RGBA") if im.mode in ("LA",) else im for im in pil]
        kwargs["append_images"] = pil[1:]
    lost = []
    if "durations" not in keeps and any(frames.durations):
        lost.append("frame durations")
    if "loop" not in keeps and frames.loop is not None:
        lost.append("the loop count")
    if "disposal" not in keeps and frames.disposal is not None and any(frames.disposal):
        lost.append("the disposal methods")
    buf = io.BytesIO()
    try:
        pil[0].save(buf, format=fmt, **kwargs)
    except (OSError, ValueError) as exc:
        raise ImageWriteError(f"{path}: cannot write: {exc}") from None
    _write(path, buf.getvalue(), overwrite)
    notes = [f"{fmt} does not store {', '.join(lost)}; not kept"] if lost else []
    if fmt == "GIF":
        notes.append("GIF stores at most 256 colours: the frames are palette-quantised")
    return "; ".join(notes) or None


__all__ = ["Frames", "frame_count", "read_frames", "save_frames"]
