"""MATLAB-compatible ``imresize(x, scale, 'bicubic')`` in vectorised numpy.

Semantics of MATLAB's ``imresize`` with the default bicubic method:

* cubic kernel with ``a = -0.5`` (Keys), support 4;
* when shrinking (``scale < 1``) the kernel is widened by ``1/scale``
  (antialiasing), ``h(x) = scale * cubic(scale * x)``;
* output size ``ceil(in * scale)``;
* out-of-range taps are mirrored (``symmetric`` padding);
* weights of each output pixel are normalised to sum to one;
* dimensions are resized one at a time, the one with the smaller scale first
  (rows first on a tie); ``uint8`` input gives ``uint8`` output, rounded
  (half away from zero) and saturated once, after both dimensions. (Rounding
  after each dimension instead moves the published bicubic PSNRs by up to
  0.01 dB further from the published values; both are within 0.03 dB.)

No Python loop runs over pixels: each dimension is one gather and one
weighted sum. Pure numpy (no TensorFlow), so the same code serves the JAX
training script on machines without TensorFlow.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


@lru_cache(maxsize=256)
def contributions(in_length: int, out_length: int, scale: float, antialiasing: bool = True):
    """Weights ``(out, P)`` and 0-based source indices ``(out, P)`` for one dimension."""
    kernel_width = 4.0
    if scale < 1 and antialiasing:
        kernel_width /= scale

        def kernel(x):
            return scale * cubic(scale * x)

    else:
        kernel = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights /= weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)
    weights, indices = weights[:, keep], indices[:, keep]
    # symmetric padding: 1-based index i maps to aux[(i - 1) mod 2n]
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


def _round_uint8(x: np.ndarray) -> np.ndarray:
    # MATLAB rounds half away from zero; values are >= 0 after clipping
    return np.floor(np.clip(x, 0, 255) + 0.5).astype(np.uint8)


def _resize_axis(x: np.ndarray, axis: int, out_length: int, scale: float, antialiasing: bool) -> np.ndarray:
    weights, indices = contributions(x.shape[axis], out_length, scale, antialiasing)
    moved = np.moveaxis(x, axis, 0).astype(np.float64, copy=False)
    gathered = moved[indices]  # (out, P, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    out = np.einsum("op...,op...->o...", gathered, np.broadcast_to(w, gathered.shape), optimize=False)
    return np.moveaxis(out, 0, axis)


def output_size(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    return (int(math.ceil(shape[0] * scale)), int(math.ceil(shape[1] * scale)))


def imresize(image: np.ndarray, scale: float, antialiasing: bool = True, output_shape=None) -> np.ndarray:
    """Resize an ``(H, W)`` or ``(H, W, C)`` image like MATLAB ``imresize(..., 'bicubic')``.

    ``scale``: one factor, or ``(rows, columns)`` factors (an exact output size of another aspect ratio).

    ``uint8`` in gives ``uint8`` out (computed in float64, rounded once);
    float in gives ``float64`` out, unclipped.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    # one scale, or (rows, columns) scales: MATLAB's per-dimension scales of an exact output size
    scales = tuple(float(v) for v in scale) if isinstance(scale, (tuple, list)) else (float(scale),) * 2
    if min(scales) <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"cannot resize an empty image of shape {image.shape}")
    is_uint8 = image.dtype == np.uint8
    if output_shape is None:
        output_shape = (int(math.ceil(image.shape[0] * scales[0])), int(math.ceil(image.shape[1] * scales[1])))
    # MATLAB uses the given scale for the kernel, also when a size is given
    order = np.argsort(scales, kind="stable")
    out = image
    for axis in order:
        out = _resize_axis(out, int(axis), output_shape[axis], scales[axis], antialiasing)
    return _round_uint8(out) if is_uint8 else out


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop so that height and width are multiples of ``scale`` (top-left kept)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def bicubic_degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """LR image of the protocol: MATLAB bicubic ``imresize(hr, 1/scale)``; hr must be modcropped."""
    if hr.shape[0] % scale or hr.shape[1] % scale:
        raise ValueError(f"HR size {hr.shape[:2]} is not a multiple of scale {scale}; modcrop first")
    return imresize(hr, 1.0 / scale, output_shape=(hr.shape[0] // scale, hr.shape[1] // scale))


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: MATLAB bicubic ``imresize(lr, scale)``."""
    return imresize(lr, float(scale), output_shape=(lr.shape[0] * scale, lr.shape[1] * scale))
