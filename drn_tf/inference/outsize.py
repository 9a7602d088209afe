"""Any output size: the trained models (chained for factors above 4), then
MATLAB bicubic (:func:`drn_tf.core.imresize.imresize`, antialiased when
shrinking) to the exact size asked.

A :class:`SizeRequest` says what is wanted (``outscale``; ``width`` and/or
``height``; ``max_side``) and gives each image its exact output size
(:meth:`SizeRequest.target`). :func:`model_chain` picks the bundled scales
whose product is the smallest one at least the factor needed (ties: fewer
models; run smallest scale first, the cheaper order); :func:`upscale_to_size`
runs the chain through :func:`drn_tf.inference.upscale.upscale_array` (the
one tiling assembly) in float, and resamples once at the end.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

MAX_CHAIN = 4  # models in a row at most (4**4 = x256)


def _round(x: float) -> int:
    """A side in pixels: rounded half up, at least 1."""
    return max(1, math.floor(x + 0.5))


@dataclass(frozen=True)
class SizeRequest:
    """What output size is wanted. ``outscale``: a factor (any > 0); ``width`` / ``height``: one side
    (the other by the aspect ratio) or both (an exact box, aspect ratio not kept); ``max_side``: the
    longer side. One kind at a time."""

    outscale: float | None = None
    width: int | None = None
    height: int | None = None
    max_side: int | None = None

    def __post_init__(self):
        kinds = [self.outscale is not None, self.width is not None or self.height is not None,
                 self.max_side is not None]
        if sum(kinds) > 1:
            raise ValueError("give one of: an output scale, a width and/or height, or a maximum side")
        if self.outscale is not None and not (math.isfinite(self.outscale) and self.outscale > 0):
            raise ValueError(f"the output scale must be a number > 0, got {self.outscale}")
        for name in ("width", "height", "max_side"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1 pixel, got {v}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.outscale, self.width, self.height, self.max_side))

    def target(self, w: int, h: int) -> tuple[int, int]:
        """The exact output ``(width, height)`` of a ``w x h`` input."""
        if self.outscale is not None:
            return _round(w * self.outscale), _round(h * self.outscale)
        if self.max_side is not None:
            f = self.max_side / max(w, h)
            return _round(w * f), _round(h * f)
        if self.width is not None and self.height is not None:
            return self.width, self.height
        if self.width is not None:
            return self.width, _round(h * self.width / w)
        if self.height is not None:
            return _round(w * self.height / h), self.height
        raise ValueError("no output size asked")

    def label(self) -> str:
        """The output file name's tag: ``x1.5``, ``w1000``, ``h800``, ``1000x800``, ``max2048``."""
        if self.outscale is not None:
            return f"x{self.outscale:g}"
        if self.max_side is not None:
            return f"max{self.max_side}"
        if self.width is not None and self.height is not None:
            return f"{self.width}x{self.height}"
        return f"w{self.width}" if self.width is not None else f"h{self.height}"


def model_chain(factor: float, scales=(2, 3, 4)) -> tuple[int, ...]:
    """The scales to run in a row for a ``factor``: the smallest product >= ``factor`` (ties: fewer
    models), in increasing order; ``()`` when ``factor <= 1`` (bicubic alone). ValueError beyond
    :data:`MAX_CHAIN` models."""
    if factor <= 1:
        return ()
    best = None
    for n in range(1, MAX_CHAIN + 1):
        for combo in itertools.combinations_with_replacement(sorted(set(scales)), n):
            p = math.prod(combo)
            if p >= factor - 1e-9 and (best is None or (p, len(combo)) < (math.prod(best), len(best))):
                best = combo
    if best is None:
        raise ValueError(f"x{factor:g} needs more than {MAX_CHAIN} models in a row (at most "
                         f"x{max(scales) ** MAX_CHAIN}); give a smaller size")
    return best


def plan_size(w: int, h: int, request: SizeRequest, scales=(2, 3, 4), max_pixels: int | None = None):
    """``(target (W, H), chain)`` of a ``w x h`` input; ValueError for a size that is too small or
    whose largest step would pass ``max_pixels``."""
    if h < 2 or w < 2:
        raise ValueError(f"image of {w}x{h} pixels is too small to upscale (at least 2x2)")
    tw, th = request.target(w, h)
    chain = model_chain(max(tw / w, th / h), scales)
    p = math.prod(chain)
    if max_pixels is not None and max(w * h * p * p, tw * th) > max_pixels:
        big = max(w * h * p * p, tw * th)
        raise ValueError(f"{w}x{h} to {tw}x{th} needs {big:,} pixels (models x{p}), over the limit of "
                         f"{max_pixels:,}; ask for a smaller size")
    return (tw, th), chain


def resample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Float ``(H, W[, C])`` to exactly ``size`` = (width, height) with MATLAB bicubic (antialiased when
    shrinking), clipped to [0, 1]; the image itself when it has that size."""
    from drn_tf.core.imresize import imresize

    h, w = image.shape[:2]
    tw, th = size
    if (w, h) == (tw, th):
        return image
    out = imresize(image.astype(np.float64, copy=False), (th / h, tw / w), output_shape=(th, tw))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def upscale_to_size(
    image: np.ndarray,
    runtime_for: Callable[[int], object],
    size: tuple[int, int],
    chain: tuple[int, ...],
    *,
    tile="auto",
    tile_overlap: int | None = None,
    self_ensemble: bool = False,
    progress=None,
) -> np.ndarray:
    """Run the models of ``chain`` (``runtime_for(scale)`` gives each) on ``image`` (any layout and dtype
    of :func:`~drn_tf.inference.upscale.upscale_array`), in float between them, then resample to
    ``size`` = (width, height). Returns float32 in [0, 1], same layout."""
    from drn_tf.core.protocol import to_float01
    from drn_tf.core.tiling import auto_tile
    from drn_tf.inference.tiled import upscale_array

    x = image
    for s in chain:
        runtime = runtime_for(s)
        overlap = tile_overlap if tile_overlap is not None else runtime.receptive_radius
        x = upscale_array(x, runtime, tile=auto_tile(x.shape, tile, overlap), tile_overlap=overlap,
                          self_ensemble=self_ensemble, progress=progress, dtype=np.float32)
    if x is image:
        x = to_float01(image)
    return resample(x, size)


def to_dtype(image: np.ndarray, dtype) -> np.ndarray:
    """Float in [0, 1] to uint8 or uint16 pixels, rounded half up."""
    top = 65535.0 if np.dtype(dtype) == np.uint16 else 255.0
    return np.floor(np.clip(image, 0.0, 1.0) * top + 0.5).astype(dtype)


def preset_for_scale(preset: str | None, scale: int) -> str:
    """The preset of the same family at ``scale``: ``drn_s_x2`` -> ``drn_s_x4``, ``drn_s_x2_photo`` ->
    ``drn_s_x4_photo``; None -> ``drn_x{scale}``."""
    import re

    if not preset:
        return f"drn_x{scale}"
    return re.sub(r"_x\d+(?=_|$)", f"_x{scale}", preset, count=1)


__all__ = ["SizeRequest", "model_chain", "plan_size", "preset_for_scale", "resample", "to_dtype",
           "upscale_to_size"]
