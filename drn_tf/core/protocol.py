"""The evaluation protocol of the SR literature, written once; numpy only, no Keras/TensorFlow/JAX.

For every image of a benchmark folder (see ``../shared/data/README.md``):

1. HR = the image as stored, modcropped to a multiple of the scale. Colour
   images are RGB; single-channel images stay single-channel (Set14's
   ``bridge.png``), as the protocol says.
2. LR = MATLAB ``imresize(HR, 1/s, 'bicubic')`` on uint8
   (:func:`drn_tf.core.imresize.bicubic_degrade`), on every channel present.
3. SR = bicubic ``imresize(LR, s)`` (the baseline, :func:`upscale_bicubic`) or
   the model. The model sees RGB: a grey LR is replicated to 3 channels and
   the model's 3 output channels are averaged back to one channel (before
   clipping and rounding): :func:`model_input`, :func:`model_output`. SR is
   clipped to [0, 1] and rounded to uint8.
4. Y = MATLAB ``rgb2ycbcr`` luma for colour images; a single-channel image is
   its own "Y" (no 16-235 luma conversion).
5. ``s`` pixels dropped on every border; PSNR (peak 255) and SSIM
   (Gaussian 11 / 1.5) on Y (:mod:`drn_tf.core.metrics`), averaged per set.

Reading: :func:`load_pair` (one file), :func:`iter_pairs` and :func:`read_benchmark`
(a folder, unreadable or too small images raised or skipped with a warning).
Users: ``drn evaluate`` (:mod:`drn_tf.inference.evaluation`), the training
validation (:mod:`drn_tf.train`), ``model.evaluate`` data
(:func:`drn_tf.data.tfdata.make_val_dataset`, with the ``keras.ops`` form of
steps 3-5 in :mod:`drn_tf.models.metrics`) and the export report
(:mod:`drn_tf.bench.export_report`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drn_tf.core.imageio import ImageReadError, list_images, read_image
from drn_tf.core.imresize import bicubic_degrade, bicubic_upscale, modcrop
from drn_tf.core.metrics import SSIM_WINDOW, psnr_y, ssim_y, to_uint8

PROTOCOL = (
    "HR modcropped to the scale; LR = MATLAB bicubic imresize(HR, 1/s) on uint8; SR clipped and rounded "
    "to uint8; Y = rgb2ycbcr luma (single-channel images used as they are; the model sees grey replicated "
    "to RGB and its output is averaged back to one channel); s border pixels dropped; PSNR (peak 255) and "
    "SSIM (Gaussian 11/1.5) on Y, averaged over the images of a set"
)


# ---------------------------------------------------------------- steps 1-2: (LR, HR) pairs


def load_pair(path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 of the protocol for one benchmark file; grey stays ``(H, W, 1)``.

    Alpha is dropped (benchmark images have none). Raises
    :class:`~drn_tf.core.imageio.ImageReadError` for unreadable files or images too
    small for the scale and the SSIM window.
    """
    hr = modcrop(read_image(path, mode="keep"), scale)
    if min(hr.shape[:2]) - 2 * scale < SSIM_WINDOW:
        raise ImageReadError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small for x{scale} evaluation "
                             f"(needs {SSIM_WINDOW} pixels after the border crop for SSIM)")
    return bicubic_degrade(hr, scale), hr


def iter_pairs(files, scale: int, *, on_error: str = "raise", label: str = "", skipped: list | None = None):
    """``(path, LR, HR)`` of :func:`load_pair` for each of ``files``, one at a time.

    ``on_error="raise"``: an unreadable or too small image raises
    :class:`~drn_tf.core.imageio.ImageReadError`. ``"skip"``: it is named in a
    warning (``"<label>: skipping <reason>"``), its reason is appended to
    ``skipped``, and ``(path, None, None)`` is yielded for it (so a caller can
    count progress over all files).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")  # at the call, not at the first image

    def pairs():
        for f in files:
            try:
                lr, hr = load_pair(f, scale)
            except ImageReadError as exc:
                if on_error == "raise":
                    raise
                warnings.warn(f"{label}: skipping {exc}" if label else f"skipping {exc}", stacklevel=2)
                if skipped is not None:
                    skipped.append(str(exc))
                yield f, None, None
                continue
            yield f, lr, hr

    return pairs()


@dataclass
class Benchmark:
    """The (LR, HR) uint8 pairs of a benchmark folder (:func:`read_benchmark`)."""

    paths: list = field(default_factory=list)  # Path of each pair's file
    lrs: list = field(default_factory=list)
    hrs: list = field(default_factory=list)  # grey images (H, W, 1)
    skipped: list = field(default_factory=list)  # "file: reason" of each skipped image


def read_benchmark(paths, scale: int, *, on_error: str = "raise", label: str = "",
                   limit: int | None = None) -> Benchmark:
    """Every image under ``paths`` (folders, searched recursively, or files) by the protocol.

    ``limit``: only the first images (sorted by path). ``on_error``, ``label``:
    see :func:`iter_pairs`; with ``"skip"`` the result may hold no pair (its
    ``skipped`` says why). Raises ``FileNotFoundError`` when there is no image.
    """
    files = list_images(paths)
    if not files:
        where = paths if isinstance(paths, (str, os.PathLike)) else ", ".join(map(str, paths))
        raise FileNotFoundError(f"{where}: no images found")
    out = Benchmark()
    for path, lr, hr in iter_pairs(files[:limit], scale, on_error=on_error, label=label, skipped=out.skipped):
        if lr is not None:
            out.paths.append(Path(path))
            out.lrs.append(lr)
            out.hrs.append(hr)
    return out


def validation_pairs(paths, scale: int):
    """``(lrs, hrs, names)`` of :func:`read_benchmark` (any bad image raises); ``names``: the file paths."""
    bench = read_benchmark(paths, scale)
    return bench.lrs, bench.hrs, [str(p) for p in bench.paths]


# ---------------------------------------------------------------- step 3: SR


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A ``(H, W, 1)`` (or ``(N, H, W, 1)``) image replicated to 3 channels; others unchanged, any dtype."""
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def to_float01(image: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1] of an image array: uint8 / 255, uint16 / 65535, bool as 0/1, other
    integers clipped to [0, 255] / 255, floats clipped to [0, 1]."""
    image = np.asarray(image)
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


def model_input(lr: np.ndarray) -> np.ndarray:
    """What the model sees of an LR (uint8 by the protocol; any dtype of :func:`to_float01`):
    float32 RGB in [0, 1], a grey LR replicated to RGB. Shape ``(..., H, W, 3)``."""
    return as_rgb(to_float01(lr))


def model_output(sr: np.ndarray, grey: bool, dtype=np.uint8) -> np.ndarray:
    """The model's RGB output (float, [0, 1] scale, unclipped) as the protocol scores it.

    ``grey`` (the LR had one channel): the 3 channels are averaged back to one,
    in float, before clipping. Then clipped to [0, 1] and, for ``dtype`` uint8
    (the protocol's SR), rounded (:func:`drn_tf.core.metrics.to_uint8`); float32
    is only clipped (``drn_tf.upscale(..., dtype=np.float32)``).
    """
    if grey:
        sr = sr.mean(axis=-1, keepdims=True)
    if np.dtype(dtype) == np.uint8:
        return to_uint8(sr)
    return np.clip(sr, 0.0, 1.0).astype(dtype, copy=False)


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: MATLAB bicubic ``imresize(lr, s)`` on uint8, any number of channels."""
    return bicubic_upscale(lr, scale)


# ---------------------------------------------------------------- steps 4-5: scores


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of the protocol on Y with ``scale`` border pixels dropped."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ")
    return psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)


def evaluate_set(upscale, lrs, hrs, scale: int) -> tuple[float, float]:
    """Mean (PSNR, SSIM) of :func:`evaluate_pair` over (LR, HR) pairs; ``upscale(lr)`` gives the uint8 SR."""
    scores = [evaluate_pair(upscale(lr), hr, scale) for lr, hr in zip(lrs, hrs)]
    return float(np.mean([p for p, _ in scores])), float(np.mean([q for _, q in scores]))
