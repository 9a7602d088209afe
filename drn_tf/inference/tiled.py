"""The tiling assembly: whole-image or tiled super-resolution and the
self-ensemble, on any :class:`drn_tf.inference.runtime.Runtime`.

Tiling works in LR space. The image is cut into tiles that all have the same
shape (``min(tile, H) x min(tile, W)``): every tile lies inside the image
(tiles at the right/bottom edge are shifted inwards instead of padded), so
the model never sees padding that the whole-image run would not see. Each
tile contributes only its centre ("core") region; the ``overlap`` pixels of
context on each side are computed and thrown away. With ``overlap`` at least
the model's receptive radius the tiled result equals the whole-image result
(up to float round-off: max |diff| ~1e-6; bit for bit for an integer model),
with no seams. Because every tile has the same shape, the model's predict
function is traced once per image size class, not once per tile.

A runtime with one input size (``runtime.input_size``, a fixed-shape TFLite
file, what an Android app ships) gets tiles of exactly that size; an image
smaller than a tile is edge-padded to it first (results near the padded edges
then differ slightly from a dynamic-size model's).

Memory while tiling is bounded by one tile's activations plus the output
array (``H*s x W*s x 3`` float32), whatever the image size. The plan itself
(:func:`drn_tf.core.tiling.tile_starts`) and its rule
(:func:`drn_tf.core.tiling.check_tile`) are in the framework-free core.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from drn_tf.core.metrics import to_uint8
from drn_tf.core.protocol import model_input, model_output, to_float01
from drn_tf.core.tiling import dihedral, tile_starts, undihedral
from drn_tf.inference.runtime import Runtime, as_runtime


def _run(runtime: Runtime, x: np.ndarray, self_ensemble: bool) -> np.ndarray:
    """The runtime on one (H, W, 3) array, optionally averaged over the 8 flips/rotations."""
    batch = x[None]
    if not self_ensemble:
        return runtime.run_batch(batch)[0]
    acc = None
    for k in range(8):
        y = undihedral(runtime.run_batch(np.ascontiguousarray(dihedral(batch, k))), k)[0]
        acc = y.astype(np.float32, copy=True) if acc is None else acc + y
    return acc / 8.0


def predict_image(model, lr_uint8: np.ndarray) -> np.ndarray:
    """Run the model (a runtime or a Keras model) on one uint8 (H, W, 3) image, whole; returns float32
    (H*s, W*s, 3), unclipped."""
    return as_runtime(model).run_batch(model_input(lr_uint8)[None])[0]


def _resolve_overlap(runtime: Runtime, overlap) -> int:
    if overlap is None:
        overlap = runtime.receptive_radius
        if overlap is None:
            raise ValueError("cannot tell the model's receptive field; pass overlap= explicitly")
    overlap = int(overlap)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    return overlap


def _tile_shape(runtime: Runtime, lr: np.ndarray, tile) -> tuple[np.ndarray, tuple[int, int] | None]:
    """``(lr, (tile height, tile width))``, or ``(lr, None)`` for one whole-image run. A runtime with one
    input size: tiles of that size, ``lr`` edge-padded to at least one tile."""
    h, w = lr.shape[:2]
    if runtime.input_size is not None:
        th, tw = runtime.input_size
        if (h, w) == (th, tw):
            return lr, None
        if h < th or w < tw:
            lr = np.pad(lr, ((0, max(th - h, 0)), (0, max(tw - w, 0)), (0, 0)), mode="edge")
        return lr, (th, tw)
    if tile is None or (h <= tile and w <= tile):
        return lr, None
    return lr, (int(tile), int(tile))


def iter_tiles(model, lr: np.ndarray, *, tile=None, overlap=None, self_ensemble=False):
    """Yield ``(r0, r1, c0, c1, block)``: the float32 SR block for the LR core
    ``[r0:r1, c0:c1]`` (``block`` is ``((r1-r0)*s, (c1-c0)*s, 3)``), plus
    ``len()`` of the plan first as an int. ``model``: a runtime or a Keras model.
    See :func:`super_resolve`."""
    runtime = as_runtime(model)
    h, w = lr.shape[:2]
    s = runtime.scale
    lr, tiles = _tile_shape(runtime, lr, tile)
    if tiles is None:
        yield 1
        yield 0, h, 0, w, _run(runtime, lr, self_ensemble)
        return
    overlap = _resolve_overlap(runtime, overlap)
    ph, pw = lr.shape[:2]
    rows, cols = tile_starts(ph, tiles[0], overlap), tile_starts(pw, tiles[1], overlap)
    th, tw = min(tiles[0], ph), min(tiles[1], pw)
    yield len(rows) * len(cols)
    for y0, a0, a1 in rows:
        for x0, b0, b1 in cols:
            y = _run(runtime, lr[y0 : y0 + th, x0 : x0 + tw], self_ensemble)
            r1, c1 = min(a1, h), min(b1, w)  # what lies in the padding of a one-size runtime is dropped
            yield a0, r1, b0, c1, y[(a0 - y0) * s : (r1 - y0) * s, (b0 - x0) * s : (c1 - x0) * s]


def _check_lr(lr):
    lr = np.asarray(lr)
    if lr.dtype != np.uint8:
        lr = lr.astype(np.float32, copy=False)
    if lr.ndim != 3 or lr.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {lr.shape}")
    if lr.shape[0] < 1 or lr.shape[1] < 1:
        raise ValueError(f"empty image of shape {lr.shape}")
    return lr


def super_resolve(
    model,
    lr: np.ndarray,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    self_ensemble: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Super-resolve one ``(H, W, 3)`` image: float32 in ``[0, 1]``, or uint8 pixels.

    ``model``: a :class:`~drn_tf.inference.runtime.Runtime` or a Keras model.
    Returns float32 ``(H*s, W*s, 3)``, not clipped. ``tile`` (LR pixels,
    context included) enables tiling; ``overlap`` (default: the model's
    receptive radius) is the context kept on each side of a tile's core.
    ``self_ensemble`` averages the 8 flips/rotations (x8 the compute).
    ``progress(done, total)`` is called after each tile.
    """
    lr = _check_lr(lr)
    runtime = as_runtime(model)
    s = runtime.scale
    h, w = lr.shape[:2]
    tiles = iter_tiles(runtime, lr, tile=tile, overlap=overlap, self_ensemble=self_ensemble)
    total = next(tiles)
    out = None
    for done, (a0, a1, b0, b1, block) in enumerate(tiles, 1):
        if total == 1:
            out = np.asarray(block, dtype=np.float32)
        else:
            if out is None:
                out = np.empty((h * s, w * s, 3), np.float32)
            out[a0 * s : a1 * s, b0 * s : b1 * s] = block
        if progress is not None:
            progress(done, total)
    return out


def upscale_array(
    image: np.ndarray,
    model,
    *,
    tile: int | None = None,
    tile_overlap: int | None = None,
    self_ensemble: bool = False,
    progress=None,
    dtype=np.uint8,
) -> np.ndarray:
    """Upscale an image of any channel layout with a resolved model.

    ``image``: ``(H, W)``, ``(H, W, 1)`` grey, ``(H, W, 2)`` grey+alpha,
    ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; uint8, uint16, or float in
    [0, 1]. Grey is replicated to RGB for the model and averaged back
    (:func:`drn_tf.core.protocol.model_input`, :func:`~drn_tf.core.protocol.model_output`); alpha
    is upscaled with MATLAB bicubic (:func:`drn_tf.core.imresize.imresize`).
    Returns ``dtype`` (uint8: rounded; float32: clipped to [0, 1]) in the
    same layout. Tiles are converted as they come, so with tiling the peak
    memory is one tile's activations plus the output array in ``dtype``.
    """
    from drn_tf.core.imresize import imresize

    arr = np.asarray(image)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (H, W) or (H, W, 1|2|3|4) image, got shape {np.asarray(image).shape}")
    h, w, c = arr.shape
    if h < 2 or w < 2:
        raise ValueError(f"image of {w}x{h} pixels is too small (at least 2x2 needed)")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.float32)):
        raise ValueError("dtype must be uint8 or float32")
    runtime = as_runtime(model)
    s = runtime.scale
    has_alpha = c in (2, 4)
    grey = c - has_alpha == 1
    rgb = model_input(arr[..., : c - 1] if has_alpha else arr)
    out = np.empty((h * s, w * s, c), dtype)
    tiles = iter_tiles(runtime, rgb, tile=tile, overlap=tile_overlap, self_ensemble=self_ensemble)
    total = next(tiles)
    for done, (a0, a1, b0, b1, block) in enumerate(tiles, 1):
        out[a0 * s : a1 * s, b0 * s : b1 * s, : c - has_alpha] = model_output(block, grey, dtype)
        del block
        if progress is not None:
            progress(done, total)
    del rgb
    if has_alpha:
        alpha = to_float01(arr[..., -1]).astype(np.float64)
        alpha = np.clip(imresize(alpha, float(s), output_shape=(h * s, w * s)), 0.0, 1.0)
        out[..., -1] = to_uint8(alpha) if dtype == np.uint8 else alpha
    return out[..., 0] if squeeze else out


__all__ = ["iter_tiles", "predict_image", "super_resolve", "upscale_array"]
