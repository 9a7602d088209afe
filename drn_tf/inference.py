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

import math
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

# Default LR tile side (input pixels including the overlap) and the image
# area above which upscale() tiles by default. Measured on a 2-core CPU with
# drn_x4, 1920x1080 -> 7680x4320 through `drn upscale` (/usr/bin/time -v):
# peak RSS 1.09 GB tiled (auto: 240-pixel tiles, 5x9) against 6.8 GB whole,
# identical uint8 output, tiled 82 s vs whole 133 s. TensorFlow itself is
# ~0.72 GB of that; a whole-image run costs ~3 KB of activations per LR pixel
# for drn (so 512x512 = 0.8 GB extra, the threshold below).
DEFAULT_TILE = 256
AUTO_TILE_PIXELS = 512 * 512


class ModelError(ValueError):
    """No usable model: missing/corrupt file, wrong scale, no bundled weights."""


# ---------------------------------------------------------------- backend start-up


# ---------------------------------------------------------------- model facts


def model_scale(model) -> int:
    """Upscaling factor of ``model``: from its config, else from a probe run."""
    try:
        cfg = model.get_config()
        if "scale" in cfg:
            return int(cfg["scale"])
    except Exception:  # noqa: BLE001 - any config problem: probe instead
        pass
    probe = np.zeros((1, 8, 8, 3), np.float32)
    out = np.asarray(model.predict_on_batch(probe))
    if out.shape[1] % 8 or out.shape[2] % 8 or out.shape[1] != out.shape[2]:
        raise ModelError(f"cannot infer the scale of the model: 8x8 input gave {out.shape[1:3]}")
    return out.shape[1] // 8


def model_receptive_radius(model) -> int | None:
    """Receptive radius (LR pixels) of ``model``; None if it cannot be told."""
    radius = getattr(model, "receptive_radius", None)
    if isinstance(radius, int):
        return radius
    try:
        cfg = model.get_config()
        from drn_tf.layers import upsampler_stages
        from drn_tf.model import receptive_radius

        return receptive_radius(
            int(cfg["num_groups"]),
            int(cfg["num_blocks"]),
            len(upsampler_stages(int(cfg["scale"]), cfg.get("upsampler", "single"))),
        )
    except Exception:  # noqa: BLE001
        return None


def _predict(model, batch: np.ndarray) -> np.ndarray:
    """One forward pass on a float32 NHWC batch -> float32 numpy.

    ``predict_on_batch`` reuses Keras's cached predict function (a
    ``tf.function`` with ``reduce_retracing=True`` on TensorFlow, a jitted
    function on JAX), so calling it per tile does not rebuild anything.
    """
    return np.asarray(model.predict_on_batch(np.ascontiguousarray(batch, dtype=np.float32)), dtype=np.float32)


# ---------------------------------------------------------------- tiling


def tile_starts(length: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """1-D tiling plan: ``(window_start, core_start, core_end)`` per tile.

    Windows have length ``min(tile, length)``, lie inside ``[0, length)`` and
    are spread evenly; the cores partition ``[0, length)``; every core has at
    least ``overlap`` pixels of context inside its window on each side,
    except at the image border (where the whole-image run has no context
    either). ``n = ceil((length - 2*overlap) / (tile - 2*overlap))`` tiles.
    """
    if length <= tile:
        return [(0, 0, length)]
    core = tile - 2 * overlap
    if core < 1:
        raise ValueError(f"tile {tile} is too small for an overlap of {overlap} on each side")
    n = max(2, math.ceil((length - 2 * overlap) / core))
    starts = [(k * (length - tile)) // (n - 1) for k in range(n)]
    # core boundary between windows k and k+1: the middle of their overlap
    bounds = [0] + [(starts[k + 1] + starts[k] + tile) // 2 for k in range(n - 1)] + [length]
    plan = []
    for k in range(n):
        w0, c0, c1 = starts[k], bounds[k], bounds[k + 1]
        assert c0 < c1 and (k == 0 or c0 - w0 >= overlap) and (k == n - 1 or w0 + tile - c1 >= overlap)
        plan.append((w0, c0, c1))
    return plan


def count_tiles(shape, tile: int | None, overlap: int) -> int:
    if tile is None:
        return 1
    h, w = shape[:2]
    return len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """k-th of the 8 flips/rotations of an (N, H, W, C) batch."""
    if k >= 4:
        x = x[:, :, ::-1, :]
    return np.rot90(x, k % 4, axes=(1, 2))


def _undihedral(y: np.ndarray, k: int) -> np.ndarray:
    y = np.rot90(y, -(k % 4), axes=(1, 2))
    if k >= 4:
        y = y[:, :, ::-1, :]
    return y


def _run(model, x: np.ndarray, self_ensemble: bool) -> np.ndarray:
    """Model on one (H, W, 3) array, optionally averaged over the 8 transforms."""
    batch = x[None]
    if not self_ensemble:
        return _predict(model, batch)[0]
    acc = None
    for k in range(8):
        y = _undihedral(_predict(model, _dihedral(batch, k)), k)[0]
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


# ---------------------------------------------------------------- model resolution

_MODEL_CACHE: dict = {}


def no_bundled_model_message(preset: str) -> str:
    return f"no trained model bundled for preset {preset}; pass --model FILE"


def load_model_file(path, scale: int | None = None):
    """Load a ``.keras`` file with a clear :class:`ModelError` for every failure."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a .keras model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty model file (0 bytes)")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a valid .keras model file (not a zip archive: corrupt or truncated?)")
    from drn_tf.model import load_model

    try:
        model = load_model(path)
    except Exception as exc:  # noqa: BLE001 - zip/h5/json/keras errors all mean "corrupt"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:160].rsplit(" ", 1)[0] + " ..."
        raise ModelError(f"{path}: cannot load model ({reason})") from None
    check_scale(model, scale, str(path))
    return model


def check_scale(model, scale: int | None, name: str = "model") -> int:
    s = model_scale(model)
    if scale is not None and int(scale) != s:
        raise ModelError(f"{name} is a x{s} model, but x{scale} was asked for (--scale {scale})")
    return s


def resolve_model(model=None, preset: str | None = None, scale: int | None = None):
    """``model`` (keras.Model or path) else ``preset`` else ``drn_x{scale}``.

    A preset is used only if its trained model is bundled
    (``assets/<preset>.keras``); random weights are never used silently.
    """
    if model is not None:
        if isinstance(model, (str, os.PathLike)):
            model_path = model
            key = ("file", str(Path(model).resolve()))
            st = Path(model).stat() if Path(model).is_file() else None
            key += ((st.st_mtime_ns, st.st_size) if st else (None,))
            if key not in _MODEL_CACHE:
                _MODEL_CACHE.clear()
                _MODEL_CACHE[key] = load_model_file(model)
            model = _MODEL_CACHE[key]
            check_scale(model, scale, str(model_path))
        else:
            check_scale(model, scale)
        return model
    from drn_tf.model import DRN, bundled_model_path
    from drn_tf.presets import get_preset

    name = preset or f"drn_x{2 if scale is None else int(scale)}"
    try:
        get_preset(name)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    path = bundled_model_path(name)
    if path is None:
        raise ModelError(no_bundled_model_message(name))
    key = ("preset", name, str(path))
    if key not in _MODEL_CACHE:
        try:
            _MODEL_CACHE[key] = DRN.from_preset(name)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: cannot load the bundled model ({exc})") from None
    model = _MODEL_CACHE[key]
    check_scale(model, scale, f"preset {name}")
    return model


# ---------------------------------------------------------------- the Python API


def _as_float01(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype == np.bool_:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image.astype(np.float32), 0.0, 1.0)
    if np.issubdtype(image.dtype, np.integer):
        return np.clip(image.astype(np.float32), 0, 255) / 255.0
    raise ValueError(f"unsupported image dtype {image.dtype}")


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


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
    [0, 1]. Grey is replicated to RGB for the model and averaged back; alpha
    is upscaled with MATLAB bicubic (:func:`drn_tf.imresize.imresize`).
    Returns ``dtype`` (uint8: rounded; float32: clipped to [0, 1]) in the
    same layout. Tiles are converted as they come, so with tiling the peak
    memory is one tile's activations plus the output array in ``dtype``.
    """
    from drn_tf.imresize import imresize

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
    colour = _as_float01(arr[..., : c - 1] if has_alpha else arr)
    grey = colour.shape[-1] == 1
    rgb = np.repeat(colour, 3, axis=-1) if grey else colour
    del colour
    out = np.empty((h * s, w * s, c), dtype)
    tiles = iter_tiles(model, rgb, tile=tile, overlap=tile_overlap, self_ensemble=self_ensemble)
    total = next(tiles)
    for done, (a0, a1, b0, b1, block) in enumerate(tiles, 1):
        if grey:
            block = block.mean(axis=-1, keepdims=True)
        block = np.clip(block, 0.0, 1.0)
        target = out[a0 * s : a1 * s, b0 * s : b1 * s, : (c - 1 if has_alpha else c)]
        target[...] = _to_uint8(block) if dtype == np.uint8 else block
        del block
        if progress is not None:
            progress(done, total)
    del rgb
    if has_alpha:
        alpha = _as_float01(arr[..., -1]).astype(np.float64)
        alpha = np.clip(imresize(alpha, float(s), output_shape=(h * s, w * s)), 0.0, 1.0)
        out[..., -1] = _to_uint8(alpha) if dtype == np.uint8 else alpha
    return out[..., 0] if squeeze else out


def balanced_tile(shape, tile: int, overlap: int) -> int:
    """Shrink ``tile`` so the tiles cover the image evenly (same tile count
    per side as ``tile``, least wasted context): e.g. a 600-pixel side with
    tile 256 and overlap 15 gives 3 tiles of 220 instead of 3 of 256."""
    best = 2 * overlap + 1
    for length in shape[:2]:
        if length <= tile:
            best = max(best, length)
            continue
        n = math.ceil((length - 2 * overlap) / (tile - 2 * overlap))
        best = max(best, math.ceil((length - 2 * overlap) / n) + 2 * overlap)
    return min(best, tile)


def auto_tile(shape, tile, overlap: int | None = None) -> int | None:
    """Resolve ``tile``: ``"auto"`` tiles images above AUTO_TILE_PIXELS with
    tiles of at most DEFAULT_TILE (balanced, see :func:`balanced_tile`, when
    ``overlap`` is known); 0/None: never tile; an int: that tile side."""
    if tile == "auto":
        if shape[0] * shape[1] <= AUTO_TILE_PIXELS:
            return None
        return DEFAULT_TILE if overlap is None else balanced_tile(shape, DEFAULT_TILE, overlap)
    if tile is None or int(tile) <= 0:
        return None
    return int(tile)


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
    see :mod:`drn_tf.runtimes` (TFLite files are built on first use and
    cached).
    """
    from drn_tf.runtimes import runtime_model

    m = runtime_model(resolve_model(model, preset, scale), runtime)
    arr = np.asarray(image)
    overlap = tile_overlap if tile_overlap is not None else model_receptive_radius(m)
    return upscale_array(
        arr, m, tile=auto_tile(arr.shape, tile, overlap), tile_overlap=overlap, self_ensemble=self_ensemble
    )


__all__ = [
    "DEFAULT_TILE",
    "ModelError",
    "model_receptive_radius",
    "model_scale",
    "resolve_model",
    "super_resolve",
    "tile_starts",
    "upscale",
    "upscale_array",
    "iter_tiles",
]
