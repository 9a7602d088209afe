"""The LR tiling plan of big images and the 8 flips/rotations (self-ensemble,
augmentation); numpy only, no Keras/TensorFlow/JAX.

:mod:`drn_tf.inference.tiled` runs any runtime tile by tile with this plan
(its docstring explains why the tiled result equals the whole-image one);
:func:`check_tile` is the one rule a tile and its overlap obey;
:func:`dihedral` and :func:`undihedral` serve its self-ensemble and the
training sampler's augmentation (:mod:`drn_tf.data.patches`).
"""

from __future__ import annotations

import math

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
# The overlap used when a model cannot tell its receptive radius (a TFLite file
# without drn_tf metadata, a model that is not a DRN): DRN's largest radius is 15.
FALLBACK_OVERLAP = 16


# ---------------------------------------------------------------- the tiling plan


def check_tile(tile: int, overlap: int) -> None:
    """The rule every tiling obeys: a tile keeps ``overlap`` pixels of context on
    each side of its core, so it must be larger than twice the overlap.
    Raises ValueError (the one message, wherever the rule is hit)."""
    if tile - 2 * overlap < 1:
        raise ValueError(
            f"tile {tile} is too small for an overlap of {overlap}: a tile must be larger than twice the "
            f"overlap, i.e. at least {2 * overlap + 1}"
        )


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
    check_tile(tile, overlap)
    n = max(2, math.ceil((length - 2 * overlap) / (tile - 2 * overlap)))
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
    """How many tiles the plan cuts an image of ``shape`` into (1 when ``tile`` is None)."""
    if tile is None:
        return 1
    h, w = shape[:2]
    return len(tile_starts(h, tile, overlap)) * len(tile_starts(w, tile, overlap))


def balanced_tile(shape, tile: int, overlap: int) -> int:
    """Shrink ``tile`` so the tiles cover the image evenly (same tile count
    per side as ``tile``, least wasted context): e.g. a 600-pixel side with
    tile 256 and overlap 15 gives 3 tiles of 220 instead of 3 of 256."""
    check_tile(tile, overlap)
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


# ---------------------------------------------------------------- the 8 flips/rotations


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) of the 8 flips/rotations of an ``(..., H, W, C)`` array (an image or a batch)."""
    if k >= 4:
        x = x[..., ::-1, :]  # horizontal flip
    return np.rot90(x, k % 4, axes=(-3, -2))


def undihedral(y: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`dihedral`: ``undihedral(dihedral(x, k), k) == x``."""
    y = np.rot90(y, -(k % 4), axes=(-3, -2))
    return y[..., ::-1, :] if k >= 4 else y
