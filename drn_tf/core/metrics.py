"""(split from drn_tf.models.metrics)"""

from __future__ import annotations

import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


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
    if border <= 0:
        return image
    return image[border:-border, border:-border]


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Y-channel PSNR (peak 255) after dropping ``border`` pixels per side."""
    a = shave(rgb_to_y(sr), border).astype(np.float64)
    b = shave(rgb_to_y(hr), border).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SR {a.shape} and HR {b.shape} differ in size")
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the 1-D window ``g``."""
    k = len(g)
    h, w = x.shape
    rows = sum(g[i] * x[i : h - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j : w - k + 1 + j] for j in range(k))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """Y-channel SSIM (Wang et al.; Gaussian 11/1.5, 'valid') after the border crop."""
    a = shave(rgb_to_y(sr), border).astype(np.float64)
    b = shave(rgb_to_y(hr), border).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SR {a.shape} and HR {b.shape} differ in size")
    if min(a.shape) < 11:
        raise ValueError(f"image of {a.shape} after the border crop is smaller than the 11x11 SSIM window")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = gaussian_window()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
