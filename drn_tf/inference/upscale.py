"""Inference: whole-image or tiled super-resolution, self-ensemble, the
``drn_tf.upscale`` Python API.

Tiling works in LR space. The image is cut into tiles that all have the same
shape (``min(tile, H) x min(tile, W)``): every tile lies inside the image
(tiles at the right/bottom edge are shifted inwards instead of padded), so
the model never sees padding that the whole-image run would not see. Each
tile contributes only its centre ("core") region; the ``overlap`` pixels of
context on each side are computed and thrown away. With ``overlap`` at least
the model's receptive radius the tiled result equals the whole-image result
(up to float round-off: max |diff| ~1e-6), with no seams. Because every tile
has the same shape, the model's predict function is traced once per image
size class, not once per tile.

Memory while tiling is bounded by one tile's activations plus the output
array (``H*s x W*s x 3`` float32), whatever the image size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from drn_tf.core.metrics import to_uint8
from drn_tf.core.protocol import model_input, model_output, to_float01
from drn_tf.core.tiling import auto_tile, dihedral, tile_starts, undihedral
from drn_tf.models.resolve import model_receptive_radius, model_scale, resolve_model


def _predict(model, batch: np.ndarray) -> np.ndarray:
    """One forward pass on a float32 NHWC batch -> float32 numpy.

    ``predict_on_batch`` reuses Keras's cached predict function (a
    ``tf.function`` with ``reduce_retracing=True`` on TensorFlow, a jitted
    function on JAX), so calling it per tile does not rebuild anything.
    """
    return np.asarray(model.predict_on_batch(np.ascontiguousarray(batch, dtype=np.float32)), dtype=np.float32)


def predict_image(model, lr_uint8: np.ndarray) -> np.ndarray:
    """Run the model on one uint8 (H, W, 3) image; returns float32 (H*s, W*s, 3), unclipped."""
    return _predict(model, model_input(lr_uint8)[None])[0]


def _run(model, x: np.ndarray, self_ensemble: bool) -> np.ndarray:
    """Model on one (H, W, 3) array, optionally averaged over the 8 transforms."""
    batch = x[None]
    if not self_ensemble:
        return _predict(model, batch)[0]
    acc = None
    for k in range(8):
        y = undihedral(_predict(model, dihedral(batch, k)), k)[0]
        acc = y.astype(np.float32, copy=True) if acc is None else acc + y
    return acc / 8.0


def _resolve_overlap(model, overlap):
    if overlap is None:
        overlap = model_receptive_radius(model)
        if overlap is None:
            raise ValueError("cannot tell the model's receptive field; pass overlap= explicitly")
    overlap = int(overlap)
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    return overlap


def iter_tiles(model, lr: np.ndarray, *, tile=None, overlap=None, self_ensemble=False):
    """Yield ``(r0, r1, c0, c1, block)``: the float32 SR block for the LR core
    ``[r0:r1, c0:c1]`` (``block`` is ``((r1-r0)*s, (c1-c0)*s, 3)``), plus
    ``len()`` of the plan first as an int. See :func:`super_resolve`."""
    h, w = lr.shape[:2]
    s = model_scale(model)
    if tile is None or (h <= tile and w <= tile):
        yield 1
        yield 0, h, 0, w, _run(model, lr, self_ensemble)
        return
    tile = int(tile)
    overlap = _resolve_overlap(model, overlap)
    if tile - 2 * overlap < 1:
        raise ValueError(
            f"tile {tile} is too small: it must be larger than twice the overlap ({overlap}), "
            f"i.e. at least {2 * overlap + 1}"
        )
    rows, cols = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    yield len(rows) * len(cols)
    for y0, a0, a1 in rows:
        for x0, b0, b1 in cols:
            y = _run(model, lr[y0 : y0 + th, x0 : x0 + tw], self_ensemble)
            yield a0, a1, b0, b1, y[(a0 - y0) * s : (a1 - y0) * s, (b0 - x0) * s : (b1 - x0) * s]


def _check_lr(lr):
    lr = np.asarray(lr, dtype=np.float32)
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
    """Super-resolve one float32 ``(H, W, 3)`` image in ``[0, 1]``.

    Returns float32 ``(H*s, W*s, 3)``, not clipped. ``tile`` (LR pixels,
    context included) enables tiling; ``overlap`` (default: the model's
    receptive radius) is the context kept on each side of a tile's core.
    ``self_ensemble`` averages the 8 flips/rotations (x8 the compute).
    ``progress(done, total)`` is called after each tile.
    """
    lr = _check_lr(lr)
    s = model_scale(model)
    h, w = lr.shape[:2]
    tiles = iter_tiles(model, lr, tile=tile, overlap=overlap, self_ensemble=self_ensemble)
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


# ---------------------------------------------------------------- the Python API


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
    s = model_scale(model)
    has_alpha = c in (2, 4)
    grey = c - has_alpha == 1
    rgb = model_input(arr[..., : c - 1] if has_alpha else arr)
    out = np.empty((h * s, w * s, c), dtype)
    tiles = iter_tiles(model, rgb, tile=tile, overlap=tile_overlap, self_ensemble=self_ensemble)
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


def upscale(
    image,
    scale: int | None = None,
    *,
    model=None,
    preset: str | None = None,
    tile="auto",
    tile_overlap: int | None = None,
    self_ensemble: bool = False,
    runtime: str = "keras",
) -> np.ndarray:
    """Super-resolve an image array; returns uint8 in the input's channel layout.

    ``image``: uint8 (or uint16/float in [0, 1]) ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)`` (alpha upscaled with bicubic).
    ``scale``: 2, 3 or 4 (default: the model's scale, else 2).
    Model: ``model`` (a ``keras.Model`` or a ``.keras`` path), else
    ``preset``, else ``drn_x{scale}``; a preset needs its bundled trained
    model (:class:`ModelError` otherwise). ``tile``: LR tile side, ``"auto"``
    (tile images above 512x512 pixels) or None (whole image at once).
    ``runtime``: ``"keras"`` (default here; ``drn upscale`` defaults to
    ``"auto"``), ``"litert"`` (the float32 TFLite export, same output within
    float rounding), ``"litert-int8"`` (full-integer, faster, slightly
    different output) or ``"auto"`` (the faster float runtime on this CPU);
    see :mod:`drn_tf.inference.runtimes` (TFLite files are built on first use and
    cached).
    """
    from drn_tf.inference.runtimes import runtime_model

    m = runtime_model(resolve_model(model, preset, scale), runtime)
    arr = np.asarray(image)
    overlap = tile_overlap if tile_overlap is not None else model_receptive_radius(m)
    return upscale_array(
        arr, m, tile=auto_tile(arr.shape, tile, overlap), tile_overlap=overlap, self_ensemble=self_ensemble
    )


__all__ = ["iter_tiles", "super_resolve", "upscale", "upscale_array"]
