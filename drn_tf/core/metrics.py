"""Protocol PSNR and SSIM on the Y channel, in numpy (no Keras/TensorFlow/JAX).

Steps 3-5 of the evaluation protocol (:mod:`drn_tf.core.protocol`): float SR
clipped and rounded to uint8 (:func:`to_uint8`), MATLAB ``rgb2ycbcr`` luma
rounded to uint8 (single-channel images used as they are), ``border`` pixels
dropped on every side, PSNR (peak 255) and SSIM (Wang et al.: Gaussian window
11 / 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering). :mod:`drn_tf.models.metrics`
computes the same with ``keras.ops`` for ``model.evaluate``.
"""

from __future__ import annotations

import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0  # MATLAB rgb2ycbcr: Y = 16 + RGB (0-255) @ these
SSIM_WINDOW = 11  # side of the Gaussian SSIM window (sigma 1.5)
SSIM_SIGMA = 1.5


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (clipped, rounded half up); uint8 passes through."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` luma of a uint8 RGB image, rounded to uint8.

    ``(H, W)`` or ``(H, W, 1)`` images are returned unchanged (as ``(H, W)``).
    """
    image = to_uint8(image)
    if image.ndim == 2:
        return image
    if image.shape[-1] == 1:
        return image[..., 0]
    y = 16.0 + image[..., :3].astype(np.float64) @ _Y_WEIGHTS
    return np.floor(y + 0.5).astype(np.uint8)


def shave(image: np.ndarray, border: int) -> np.ndarray:
    """``image`` without ``border`` pixels on every side."""
    if border <= 0:
        return image
    return image[border:-border, border:-border]


def _y_pair(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 Y of SR and HR with the border dropped; their sizes must agree."""
    a = shave(rgb_to_y(sr), border).astype(np.float64)
    b = shave(rgb_to_y(hr), border).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SR {a.shape} and HR {b.shape} differ in size")
    return a, b


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Y-channel PSNR (peak 255) after dropping ``border`` pixels per side."""
    a, b = _y_pair(sr, hr, border)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The normalised 1-D Gaussian of the SSIM window (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the 1-D window ``g``."""
    k = len(g)
    h, w = x.shape
    rows = sum(g[i] * x[i : h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j : w - k + 1 + j] for j in range(k))


def ssim_map(a, b, filt):
    """The SSIM map of two [0, 255] images, ``filt`` being the window's 'valid' filter.

    Only arithmetic operators: the same formula serves numpy (:func:`ssim_y`) and
    ``keras.ops`` tensors (:class:`drn_tf.models.metrics.YSSIM`).
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Y-channel SSIM (Wang et al.; Gaussian 11/1.5, 'valid') after the border crop."""
    a, b = _y_pair(sr, hr, border)
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"image of {a.shape} after the border crop is smaller than the "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} SSIM window")
    g = gaussian_window()
    return float(ssim_map(a, b, lambda x: _filter_valid(x, g)).mean())
