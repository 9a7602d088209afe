"""One picture file in, one out: what ``drn upscale`` does to each image input.

:func:`upscale_image` upscales one array (uint8 or uint16, any channel
layout) by the model's scale or to the size a
:class:`~drn_tf.inference.outsize.SizeRequest` asks; :func:`upscale_picture`
reads a file (every frame of an animated GIF / APNG / WebP or multi-page TIFF;
16-bit PNG/TIFF as 16 bits), upscales it and writes the output atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from drn_tf.inference.outsize import SizeRequest, plan_size, to_dtype, upscale_to_size


@dataclass
class Upscaler:
    """How to upscale: ``runtime_for(scale)`` gives the model of a scale (``scales``: those there
    are; ``scale``: the one used without a size request), the tiling and the self-ensemble."""

    runtime_for: Callable[[int], object]
    scale: int
    scales: tuple = (2, 3, 4)
    request: SizeRequest | None = None
    tile: object = "auto"
    tile_overlap: int | None = None
    self_ensemble: bool = False
    max_pixels: int | None = None
    model_id: str = ""  # what names the models (file, preset, runtime): a video's work folder is kept only for the same

    def plan(self, w: int, h: int) -> tuple[tuple[int, int], tuple[int, ...]]:
        """``((width, height) of the output, chain of scales)``; ValueError for a refused size."""
        if self.request is not None and self.request.active:
            return plan_size(w, h, self.request, self.scales, self.max_pixels)
        return plan_size(w, h, SizeRequest(outscale=float(self.scale)), (self.scale,), self.max_pixels)


def upscale_image(image: np.ndarray, up: Upscaler, progress=None) -> np.ndarray:
    """``image`` (uint8 or uint16, ``(H, W[, 1|2|3|4])``) upscaled, in its dtype and layout. Without a
    size request and for uint8, exactly :func:`~drn_tf.inference.upscale.upscale_array` (rounded once)."""
    from drn_tf.core.tiling import auto_tile
    from drn_tf.inference.tiled import upscale_array

    h, w = image.shape[:2]
    size, chain = up.plan(w, h)
    if image.dtype == np.uint8 and chain == (up.scale,) and size == (w * up.scale, h * up.scale):
        runtime = up.runtime_for(up.scale)
        overlap = up.tile_overlap if up.tile_overlap is not None else runtime.receptive_radius
        return upscale_array(image, runtime, tile=auto_tile(image.shape, up.tile, overlap), tile_overlap=overlap,
                             self_ensemble=up.self_ensemble, progress=progress)
    out = upscale_to_size(image, up.runtime_for, size, chain, tile=up.tile, tile_overlap=up.tile_overlap,
                          self_ensemble=up.self_ensemble, progress=progress)
    return to_dtype(out, image.dtype if image.dtype == np.uint16 else np.uint8)


@dataclass
class Done:
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    frames: int
    note: str | None


def upscale_picture(src, dst, fmt: str, up: Upscaler, *, overwrite=False, quality=95, keep_metadata=True,
                    warn: Callable[[str], None] = print, progress=None) -> Done:
    """Read ``src``, upscale every frame, write ``dst`` (format ``fmt``) atomically, with the input's ICC
    profile, EXIF and DPI (``keep_metadata``). Warnings go to ``warn`` as they come; ValueError /
    ImageReadError / ImageWriteError name what stopped it. Nothing is opened before ``src`` is known to
    be a regular file, and nothing decoded before its header's size is accepted."""
    import warnings

    from drn_tf.core.frames import frame_count, read_frames, save_frames
    from drn_tf.core.imageio import header_size, read_image, read_metadata, save_image

    w, h = header_size(src)
    up.plan(w, h)  # a size refused from the header alone, before any pixel is decoded
    if frame_count(src) > 1:
        frames = read_frames(src)
        h, w = frames.images[0].shape[:2]
        up.plan(w, h)  # refuse before computing
        frames.images = [upscale_image(a, up, progress) for a in frames.images]
        note = save_frames(frames, dst, fmt=fmt, overwrite=overwrite, quality=quality)
        oh, ow = frames.images[0].shape[:2]
        return Done((w, h), (ow, oh), len(frames.images), note)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, alpha = read_image(src, mode="keep", with_alpha=True, keep_16bit=True)
    for item in caught:
        warn(str(item.message))
    h, w = image.shape[:2]
    up.plan(w, h)
    if alpha is not None:
        image = np.concatenate([image, alpha[..., None]], axis=-1)
        del alpha
    sr = upscale_image(image, up, progress)
    del image
    note = save_image(sr, dst, fmt=fmt, overwrite=overwrite, quality=quality,
                      metadata=read_metadata(src) if keep_metadata else None)
    return Done((w, h), (sr.shape[1], sr.shape[0]), 1, note)


__all__ = ["Done", "Upscaler", "upscale_image", "upscale_picture"]
