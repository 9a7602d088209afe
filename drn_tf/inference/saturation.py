"""The int8 saturation guard: int8 where its ranges hold, float where an activation clipped.

An int8 model's activation ranges are calibrated on photos. On regular
high-frequency structure (stripes, checkerboards, grids, text at full
contrast) activations leave those ranges and are clipped all through the
network, and the int8 output loses several dB where the float model does not
(``docs/export.md``). Ranges wide enough for those images cost photos 0.4 dB,
so the ranges stay and the clipping is detected instead:

1. the int8 file the ``litert-int8`` runtime runs has, after the image, one
   saturation map per convolution output (:func:`drn_tf.export.tflite.convert_tflite`'s
   ``saturation_maps``, :func:`drn_tf.export.int8.saturation_taps`: where
   clipping starts; they cost about 4.5 % of a photo's int8 run, every tap's
   maps 7 %): the tap's per-channel maximum over ``block`` x
   ``block`` LR pixels, at the tap's own quantization, so the top level (255
   in the uint8 output) marks a channel that clipped in that block;
2. :func:`block_scores`: per block, the fraction of clipped channels,
   averaged over the taps;
3. :func:`float_plan`: when more than :data:`IMAGE_SHARE` of the blocks score
   above :data:`IMAGE_THRESHOLD` (a page of text, a striped or tiled
   surface filling the picture), the whole image runs in float; else the
   blocks above :data:`THRESHOLD` and their neighbours are flagged
   (:func:`flagged_blocks`), and each 8-connected group of them is one
   rectangle (:func:`float_regions`);
4. :func:`patch_float` runs each rectangle again in the float model with the
   receptive radius of context around it (so its pixels are exactly the float
   model's whole-image output) and pastes it over the int8 result; when that
   would cost more than one whole-image float run, the whole image is run in
   float.

Photos are hardly touched (a few percent of their blocks, on sharp
high-contrast detail) and keep int8's speed; a page of text or a striped
facade runs in float. Framework-free: numpy only.

What it does not catch (docs/export.md): clipping too slight to tell from a
photo's (a structure patch in a photo), clipping on the low side (photos clip
there as often), and int8's rounding noise on images the float model
reconstructs to about 40 dB (smooth gratings, low-contrast grids), where no
mapped channel clips at all.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# The rule, set on the bundled presets with the regular-structure images, Set5 and Set14 (tools/int8_guard_rule.py;
# docs/export.md): a block is flagged when this fraction of the channels of an average mapped tap clipped in it ...
THRESHOLD = 0.03
# ... and the whole image runs in float when more than IMAGE_SHARE of its blocks are above IMAGE_THRESHOLD
IMAGE_THRESHOLD = 0.003
IMAGE_SHARE = 0.4
WHOLE = 0.75  # float work (rectangles with their context) above this share of the image: one whole-image run


def block_scores(maps, top: int = 255) -> np.ndarray:
    """``(hb, wb)``: per block, the fraction of channels at ``top`` (clipped), averaged over ``maps``
    (each ``(1, hb, wb, channels)``, the saturation outputs of one image)."""
    maps = list(maps)
    if not maps:
        raise ValueError("no saturation maps")
    total = None
    for m in maps:
        m = np.asarray(m)[0]
        frac = (m == top).mean(axis=-1)
        total = frac if total is None else total + frac
    return total / len(maps)


def flagged_blocks(scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Blocks whose score is above ``threshold`` (default :data:`THRESHOLD`), grown by one block on every side
    (8-neighbourhood): the error of a clipped activation spreads a few pixels beyond its block."""
    hot = np.asarray(scores) > (THRESHOLD if threshold is None else threshold)
    grown = hot.copy()
    grown[1:] |= hot[:-1]
    grown[:-1] |= hot[1:]
    wide = grown.copy()
    wide[:, 1:] |= grown[:, :-1]
    wide[:, :-1] |= grown[:, 1:]
    return wide


def float_regions(mask: np.ndarray, block: int, shape) -> list[tuple[int, int, int, int]]:
    """LR rectangles ``(r0, r1, c0, c1)`` to run in float: the bounding box of each 8-connected group of flagged
    blocks of ``mask``, clipped to the image ``shape`` (h, w)."""
    h, w = int(shape[0]), int(shape[1])
    seen = np.zeros(mask.shape, bool)
    regions = []
    for i, j in zip(*np.nonzero(mask)):
        if seen[i, j]:
            continue
        seen[i, j] = True
        stack, (r0, r1, c0, c1) = [(i, j)], (i, i, j, j)
        while stack:
            a, b = stack.pop()
            r0, r1, c0, c1 = min(r0, a), max(r1, a), min(c0, b), max(c1, b)
            for y in range(max(a - 1, 0), min(a + 2, mask.shape[0])):
                for x in range(max(b - 1, 0), min(b + 2, mask.shape[1])):
                    if mask[y, x] and not seen[y, x]:
                        seen[y, x] = True
                        stack.append((y, x))
        regions.append((int(r0) * block, min((int(r1) + 1) * block, h), int(c0) * block, min((int(c1) + 1) * block, w)))
    return regions


def float_plan(scores: np.ndarray, block: int, shape) -> list[tuple[int, int, int, int]]:
    """What to run in float for an image whose blocks scored ``scores``: [] (nothing), the whole image as one
    rectangle, or the rectangles around the flagged blocks (see the module docstring)."""
    scores = np.asarray(scores)
    if (scores > IMAGE_THRESHOLD).mean() > IMAGE_SHARE:
        return [(0, int(shape[0]), 0, int(shape[1]))]
    mask = flagged_blocks(scores)
    return float_regions(mask, block, shape) if mask.any() else []


def _with_context(region, radius: int, shape) -> tuple[int, int, int, int]:
    r0, r1, c0, c1 = region
    return max(r0 - radius, 0), min(r1 + radius, shape[0]), max(c0 - radius, 0), min(c1 + radius, shape[1])


def patch_float(sr: np.ndarray, lr: np.ndarray, regions, run_float: Callable, scale: int, radius: int) -> int:
    """Overwrite ``sr`` (``(h*s, w*s, 3)``, in place) on ``regions`` with the float model's output.

    ``run_float(lr_crop)`` -> ``(h'*s, w'*s, 3)`` runs the float model on an
    ``(h', w', 3)`` crop; each region is run with ``radius`` LR pixels of context
    (clipped at the image's edges, as a whole-image run sees them), so the
    pasted pixels equal the float model's whole-image output. When the crops
    add up to more than :data:`WHOLE` of the image, one whole-image run
    replaces them. Returns the number of LR pixels the float model ran on.
    """
    h, w = lr.shape[:2]
    crops = float_crops(regions, radius, (h, w))
    if crops is None:
        sr[...] = run_float(lr)
        return h * w
    for (r0, r1, c0, c1), (a0, a1, b0, b1) in zip(regions, crops):
        y = run_float(lr[a0:a1, b0:b1])
        sr[r0 * scale : r1 * scale, c0 * scale : c1 * scale] = y[
            (r0 - a0) * scale : (r1 - a0) * scale, (c0 - b0) * scale : (c1 - b0) * scale
        ]
    return sum((b - a) * (d - c) for a, b, c, d in crops)


def float_crops(regions, radius: int, shape) -> list[tuple[int, int, int, int]] | None:
    """The LR crops the float model runs for ``regions``: each with ``radius`` pixels of context, clipped to
    ``shape`` (h, w); None when they add up to more than :data:`WHOLE` of the image (one whole-image run)."""
    h, w = int(shape[0]), int(shape[1])
    crops = [_with_context(r, radius, (h, w)) for r in regions]
    return None if sum((b - a) * (d - c) for a, b, c, d in crops) > WHOLE * h * w else crops


__all__ = ["IMAGE_SHARE", "IMAGE_THRESHOLD", "THRESHOLD", "WHOLE", "block_scores", "flagged_blocks", "float_crops",
           "float_plan", "float_regions", "patch_float"]
