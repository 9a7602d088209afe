"""The ``drn_tf.upscale`` Python API and :func:`upscale_array`: images of any
channel layout through any runtime, by the one tiling assembly
(:mod:`drn_tf.inference.tiled`, whose :func:`super_resolve` and
:func:`iter_tiles` are re-exported here).
"""

from __future__ import annotations

import numpy as np

from drn_tf.core.metrics import to_uint8
from drn_tf.core.protocol import model_input, model_output, to_float01
from drn_tf.core.tiling import auto_tile
from drn_tf.inference.runtime import as_runtime
from drn_tf.inference.tiled import iter_tiles, predict_image, super_resolve


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
    kind: str = "auto",
) -> np.ndarray:
    """Super-resolve an image array; returns uint8 in the input's channel layout.

    ``image``: uint8 (or uint16/float in [0, 1]) ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)`` (alpha upscaled with bicubic), or an image file's path.
    ``kind``: which variant of a preset suits the input: ``"photo"`` (fine-tuned for JPEG-compressed
    inputs), ``"clean"``, or ``"auto"`` (photo for a JPEG file's path, clean for arrays and other files);
    a photo variant without bundled weights falls back to the clean one. A ``model`` is used as it is.
    ``scale``: 2, 3 or 4 (default: the model's scale, else 2).
    Model: ``model`` (a ``keras.Model``, a ``.keras`` path or a
    :class:`~drn_tf.inference.runtime.Runtime`, used as it is), else
    ``preset``, else ``drn_x{scale}``; a preset needs its bundled trained
    model (:class:`ModelError` otherwise). ``tile``: LR tile side, ``"auto"``
    (tile images above 512x512 pixels) or None (whole image at once).
    ``runtime``: a name of :data:`drn_tf.inference.runtimes.RUNTIMES`
    (``"keras"``, the default here; ``"litert"``: the float32 TFLite export,
    same output within float rounding; ``"litert-int8"``: full-integer, faster,
    slightly different output) or ``"auto"`` (the faster float runtime on this
    CPU; ``drn upscale``'s default). TFLite files are built on first use and cached.
    """
    import os

    from drn_tf.core.degrade import KINDS, input_kind
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.models.resolve import ModelError, preset_for_kind

    if isinstance(image, (str, os.PathLike)):
        from drn_tf.core.imageio import read_image

        chosen = input_kind(image, kind).kind
        image = read_image(image, mode="keep")
    elif kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    else:
        chosen = "clean" if kind == "auto" else kind  # an array tells nothing of its past
    if model is None:
        try:
            preset, _ = preset_for_kind(preset or f"drn_x{2 if scale is None else int(scale)}", chosen)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
    m = load_runtime(model, preset, scale, runtime)
    arr = np.asarray(image)
    overlap = tile_overlap if tile_overlap is not None else m.receptive_radius
    return upscale_array(
        arr, m, tile=auto_tile(arr.shape, tile, overlap), tile_overlap=overlap, self_ensemble=self_ensemble
    )


__all__ = ["iter_tiles", "predict_image", "super_resolve", "upscale", "upscale_array"]
