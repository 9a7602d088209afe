"""The work of one request, whatever protocol carried it: encoded image bytes in, PNG bytes out
(:meth:`Upscaler.upscale_file_bytes`, exactly ``drn upscale IN -o OUT.png``'s file), or uint8 pixels
in and out (:meth:`Upscaler.upscale_pixels`, exactly ``drn_tf.upscale``'s array).

Limits are checked before anything is decoded: the pixel count from the image's header (PIL reads
the header alone on open), the output size by :func:`drn_tf.inference.files.check_output_size`.
The request's deadline is checked before the work starts and after every tile, so a timed-out
request, or one whose client has gone, stops within one tile. The model runs under a lock (one model instance, all intra-op
threads); decoding, tiling and PNG encoding of other requests go on meanwhile.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drn_tf.inference.runtime import Runtime


class RequestError(Exception):
    """A request the server refuses: HTTP ``status`` and a one-line message (a JSON ``{"error": ...}``)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def too_large(message: str) -> RequestError:
    return RequestError(message, 413)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_pixels: int = 4_194_304  # LR pixels per image (2048x2048)
    max_batch: int = 16  # images per request
    timeout: float = 60.0  # seconds from arrival to answer


class LockedRuntime(Runtime):
    """A runtime whose forward passes run one at a time (LiteRT interpreters are not thread-safe,
    and one pass already uses every intra-op thread)."""

    def __init__(self, runtime: Runtime):
        self.inner = runtime
        self.name, self.scale = runtime.name, runtime.scale
        self.receptive_radius, self.input_size = runtime.receptive_radius, runtime.input_size
        self._lock = threading.Lock()

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            return self.inner.run_batch(batch)


def header_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from an encoded image's header, nothing decoded; :class:`RequestError` if it
    is no image PIL knows, 413 if PIL refuses the size outright."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError as exc:
        raise too_large(f"image refused: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError("not an image file (PNG, JPEG, BMP, GIF, WebP, TIFF ...)") from None


#: The HTTP request being answered: an event set when its client goes away (the server's middleware sets it)
GONE: ContextVar[threading.Event | None] = ContextVar("drn_serve_client_gone", default=None)

CLIENT_GONE = 499  # the status of work abandoned because nobody waits for it (nginx's "client closed request")


class Deadline:
    """The request's time limit: :meth:`check` raises 504 once it has passed, and 499 once ``gone`` is set
    (the client closed the connection or cancelled the call: nobody waits for the answer)."""

    def __init__(self, seconds: float, gone: threading.Event | None = None):
        self.seconds, self.end = seconds, time.monotonic() + seconds
        self.gone = gone if gone is not None else threading.Event()

    def check(self, *_):
        if self.gone.is_set():
            raise RequestError("the client went away; the request was abandoned", CLIENT_GONE)
        if time.monotonic() > self.end:
            raise RequestError(f"request took longer than the {self.seconds:g} s limit; try a smaller image", 504)


class Upscaler:
    """One served model: a runtime (locked), its limits, and the two kinds of work."""

    def __init__(self, runtime: Runtime, limits: Limits):
        self.runtime = runtime if isinstance(runtime, LockedRuntime) else LockedRuntime(runtime)
        self.limits = limits
        self.scale = runtime.scale

    def check_size(self, w: int, h: int) -> None:
        """413 over the pixel limit or the output limit, 400 below 2x2."""
        from drn_tf.inference.files import check_output_size

        if w * h > self.limits.max_pixels:
            raise too_large(f"{w}x{h} = {w * h:,} pixels is over this server's limit of {self.limits.max_pixels:,} per image")
        try:
            check_output_size(w, h, self.scale)
        except ValueError as exc:
            raise RequestError(str(exc), 400 if w < 2 or h < 2 else 413) from None

    def upscale_pixels(self, image: np.ndarray, deadline: Deadline) -> np.ndarray:
        """uint8 ``(h, w, 3)`` -> uint8 ``(h*s, w*s, 3)``: ``drn_tf.upscale(image, model=runtime)``."""
        from drn_tf.core.tiling import auto_tile
        from drn_tf.inference.upscale import upscale_array

        self.check_size(image.shape[1], image.shape[0])
        deadline.check()
        overlap = self.runtime.receptive_radius
        return upscale_array(image, self.runtime, tile=auto_tile(image.shape, "auto", overlap),
                             tile_overlap=overlap, progress=deadline.check)

    def upscale_file_bytes(self, data: bytes, deadline: Deadline) -> bytes:
        """An encoded image -> the PNG file ``drn upscale IN -o OUT.png`` writes for it (grey stays grey,
        alpha kept, ICC profile / EXIF / DPI carried)."""
        from drn_tf.core.imageio import read_metadata, save_image

        if not data:
            raise RequestError("empty image (0 bytes)")
        self.check_size(*header_size(data))
        deadline.check()
        with tempfile.TemporaryDirectory(prefix="drn-serve-") as tmp:
            src, dst = Path(tmp) / "in", Path(tmp) / "out.png"
            src.write_bytes(data)
            image = self._read(src)
            sr = self._upscale_file_pixels(image, deadline)
            save_image(sr, dst, fmt="PNG", metadata=read_metadata(src))
            return dst.read_bytes()

    def _read(self, src: Path) -> np.ndarray:
        """The image as ``drn upscale`` reads it: channels kept, alpha appended."""
        from drn_tf.core.imageio import ImageReadError, read_image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # 16-bit or multi-frame notes: the answer is the same
                image, alpha = read_image(src, mode="keep", with_alpha=True, max_pixels=self.limits.max_pixels)
        except ImageReadError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise RequestError(f"cannot decode the image: {reason}") from None
        if alpha is not None:
            image = np.concatenate([image, alpha[..., None]], axis=-1)
        return image

    def _upscale_file_pixels(self, image: np.ndarray, deadline: Deadline) -> np.ndarray:
        """What ``drn upscale`` does to a file's pixels (its default tiling)."""
        from drn_tf.core.tiling import auto_tile
        from drn_tf.inference.upscale import upscale_array

        return upscale_array(image, self.runtime, tile=auto_tile(image.shape, "auto", None),
                             tile_overlap=None, progress=deadline.check)


def thread_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
