"""(split from drn_tf.data.patches, drn_tf.inference.evaluation)"""

from __future__ import annotations

import numpy as np

from drn_tf.core.imageio import ImageReadError, list_images, read_image
from drn_tf.core.imresize import bicubic_degrade, bicubic_upscale, modcrop
from drn_tf.core.metrics import psnr_y, ssim_y


def validation_pairs(paths, scale: int):
    """Whole-image (LR, HR, names) uint8 of benchmark folders, by the evaluation protocol:
    grey images stay single-channel (``(H, W, 1)``), as :func:`drn_tf.core.protocol.load_pair` reads them."""

    lrs, hrs, names = [], [], []
    for f in list_images(paths):
        lr, hr = load_pair(f, scale)
        lrs.append(lr)
        hrs.append(hr)
        names.append(str(f))
    if not lrs:
        raise FileNotFoundError(f"no images found under {', '.join(map(str, paths))}")
    return lrs, hrs, names

PROTOCOL = (
    "HR modcropped to the scale; LR = MATLAB bicubic imresize(HR, 1/s) on uint8; SR clipped and rounded "
    "to uint8; Y = rgb2ycbcr luma (single-channel images used as they are; the model sees grey replicated "
    "to RGB and its output is averaged back to one channel); s border pixels dropped; PSNR (peak 255) and "
    "SSIM (Gaussian 11/1.5) on Y, averaged over the images of a set"
)


# ---------------------------------------------------------------- one image


def load_pair(path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 of the protocol for one benchmark file; grey stays ``(H, W, 1)``.

    Alpha is dropped (benchmark images have none). Raises
    :class:`~drn_tf.core.imageio.ImageReadError` for unreadable files or images too
    small for the scale and the SSIM window.
    """
    hr = modcrop(read_image(path, mode="keep"), scale)
    if min(hr.shape[:2]) - 2 * scale < 11:
        raise ImageReadError(f"{path}: {hr.shape[1]}x{hr.shape[0]} is too small for x{scale} evaluation "
                             "(needs 11 pixels after the border crop for SSIM)")
    return bicubic_degrade(hr, scale), hr


def upscale_bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: MATLAB bicubic ``imresize(lr, s)`` on uint8, any number of channels."""
    return bicubic_upscale(lr, scale)


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of the protocol on Y with ``scale`` border pixels dropped."""
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} differ")
    return psnr_y(sr, hr, scale), ssim_y(sr, hr, scale)
