"""Regular-structure test images, generated in code (numpy and Pillow, deterministic).

Stripes at several periods and angles, sinusoidal gratings, checkerboards,
grids, rendered text (Pillow's default font) and a synthetic facade with
windows: the high-frequency, strongly periodic content on which a quantised
model goes wrong first (saturated activations), and which photo sets such as
Set5 and Set14 hardly contain. :func:`structure_images` gives the HR images
(``name -> uint8 (H, W, 3)``, sizes multiples of 2, 3 and 4); their LR inputs
come from the protocol's bicubic (:func:`structure_pairs`).
"""

from __future__ import annotations

import numpy as np

SIZE = 240  # HR side: a multiple of 2, 3 and 4 (LR 120, 80, 60)
_SUPER = 4  # supersampling of the analytic patterns (anti-aliased edges)


def _grid(size: int):
    """Pixel-centre coordinates of a supersampled ``size`` x ``size`` image."""
    n = size * _SUPER
    c = (np.arange(n, dtype=np.float64) + 0.5) / _SUPER
    return np.meshgrid(c, c, indexing="ij")  # (y, x)


def _box(a: np.ndarray) -> np.ndarray:
    """Supersampled ``(n, n)`` -> ``(n / S, n / S)`` by box averaging."""
    n = a.shape[0] // _SUPER
    return a.reshape(n, _SUPER, n, _SUPER).mean(axis=(1, 3))


def _colour(mask: np.ndarray, dark, light) -> np.ndarray:
    """uint8 RGB: ``mask`` (0..1) blends ``dark`` (at 0) to ``light`` (at 1)."""
    dark, light = np.asarray(dark, np.float64), np.asarray(light, np.float64)
    rgb = dark + mask[..., None] * (light - dark)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def stripes(period: float, angle: float = 0.0, size: int = SIZE, dark=(0, 0, 0), light=(255, 255, 255)):
    """Hard-edged (anti-aliased) stripes, half dark, half light; ``angle`` in degrees (0: vertical stripes)."""
    y, x = _grid(size)
    t = np.deg2rad(angle)
    u = x * np.cos(t) + y * np.sin(t)
    return _colour(_box(((u / period) % 1.0 < 0.5).astype(np.float64)), dark, light)


def grating(period: float, angle: float = 0.0, size: int = SIZE):
    """Sinusoidal grating, full contrast (0..255)."""
    y, x = _grid(size)
    t = np.deg2rad(angle)
    u = x * np.cos(t) + y * np.sin(t)
    return _colour(_box(0.5 + 0.5 * np.cos(2 * np.pi * u / period)), (0, 0, 0), (255, 255, 255))


def checkerboard(square: int, size: int = SIZE, dark=(0, 0, 0), light=(255, 255, 255)):
    """Checkerboard of ``square``-pixel squares."""
    i = np.arange(size) // square
    return _colour(((i[:, None] + i[None, :]) % 2).astype(np.float64), dark, light)


def grid(pitch: int, line: int = 2, size: int = SIZE, paper=(250, 250, 245), ink=(30, 30, 40)):
    """Lines ``line`` pixels wide every ``pitch`` pixels, both directions (graph paper, tiles)."""
    on = (np.arange(size) % pitch) < line
    return _colour((~(on[:, None] | on[None, :])).astype(np.float64), ink, paper)


def text(size: int = SIZE, font_sizes=(10, 13, 16, 22), ink=(0, 0, 0), paper=(255, 255, 255), offset: int = 0):
    """Lines of ``ink`` text on ``paper`` in Pillow's default font (FreeType when Pillow has it, at each of
    ``font_sizes``; else the bitmap font)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (size, size), tuple(paper))
    draw = ImageDraw.Draw(image)
    words = "The quick brown fox jumps over the lazy dog 0123456789 SUPER RESOLUTION int8 "
    y, k = 2, offset
    while y < size - 8:
        fs = font_sizes[k % len(font_sizes)]
        try:
            font = ImageFont.load_default(size=fs)
        except TypeError:  # Pillow < 10.1: one bitmap size
            font = ImageFont.load_default()
        start = (7 * k) % len(words)
        draw.text((2, y), (words[start:] + words) * 2, fill=tuple(ink), font=font)
        y += int(fs * 1.35) + 1
        k += 1
    return np.asarray(image, np.uint8)


def facade(size: int = SIZE, floor: int = 40, bay: int = 30, wall=(214, 190, 160), seed: int = 7):
    """A building front: plaster wall, rows of dark windows with white frames and mullions, floor ledges
    (a window per ``bay`` pixels, a floor per ``floor``)."""
    img = np.empty((size, size, 3), np.float64)
    img[:] = wall
    rng = np.random.default_rng(seed)
    img += rng.normal(0.0, 3.0, (size, size, 1))  # plaster texture
    for top in range(0, size, floor):
        img[top : top + 3] = (150, 130, 110)  # ledge
        for left in range(6, size - 20, bay):
            y0, x0, h, w = top + floor // 4, left, floor * 3 // 5, bay * 3 // 5
            img[y0 : y0 + h, x0 : x0 + w] = (245, 245, 240)  # frame
            img[y0 + 2 : y0 + h - 2, x0 + 2 : x0 + w - 2] = (40, 55, 75)  # glass
            img[y0 + 2 : y0 + h - 2, x0 + w // 2 - 1 : x0 + w // 2 + 1] = (245, 245, 240)  # mullion
            img[y0 + h // 2 - 1 : y0 + h // 2 + 1, x0 + 2 : x0 + w - 2] = (245, 245, 240)  # transom
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# name -> (function, keyword arguments): the regular-structure set
STRUCTURES = {
    "stripes_v8": (stripes, {"period": 8}),
    "stripes_h12": (stripes, {"period": 12, "angle": 90}),
    "stripes_d45_10": (stripes, {"period": 10, "angle": 45}),
    "stripes_d30_16": (stripes, {"period": 16, "angle": 30, "dark": (20, 40, 120), "light": (240, 220, 90)}),
    "grating_v6": (grating, {"period": 6}),
    "grating_d60_9": (grating, {"period": 9, "angle": 60}),
    "checker_6": (checkerboard, {"square": 6}),
    "checker_16": (checkerboard, {"square": 16, "dark": (160, 20, 20), "light": (240, 240, 240)}),
    "grid_12": (grid, {"pitch": 12}),
    "grid_24_1": (grid, {"pitch": 24, "line": 1}),
    "text": (text, {}),
    "facade": (facade, {}),
}


def structure_images(names=None) -> dict[str, np.ndarray]:
    """``name -> HR uint8 (SIZE, SIZE, 3)`` for ``names`` (default: all of :data:`STRUCTURES`)."""
    return {n: STRUCTURES[n][0](**STRUCTURES[n][1]) for n in (names or STRUCTURES)}


def structure_pairs(scale: int, names=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (LR, HR)`` uint8 by the protocol (LR = MATLAB bicubic of the HR)."""
    from drn_tf.core.imresize import bicubic_degrade

    return {n: (bicubic_degrade(hr, scale), hr) for n, hr in structure_images(names).items()}


def _random_structure(rng: np.random.Generator, size: int) -> np.ndarray:
    """One HR image of a random member of the families above (other periods, angles and colours than
    :data:`STRUCTURES`' fixed ones)."""
    def colours():
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if rng.random() < 0.5:  # half of them black and white: the strongest edges
            a, b = np.zeros(3, int), np.full(3, 255)
        return tuple(int(v) for v in a), tuple(int(v) for v in b)

    kind = int(rng.integers(0, 6))
    dark, light = colours()
    if kind == 0:
        return stripes(float(rng.uniform(3, 24)), float(rng.uniform(0, 180)), size, dark, light)
    if kind == 1:
        return grating(float(rng.uniform(3, 20)), float(rng.uniform(0, 180)), size)
    if kind == 2:
        return checkerboard(int(rng.integers(2, 20)), size, dark, light)
    if kind == 3:
        return grid(int(rng.integers(5, 30)), int(rng.integers(1, 4)), size, light, dark)
    if kind == 4:
        sizes = tuple(int(v) for v in rng.integers(8, 26, 3))
        return text(size, sizes, dark, light, offset=int(rng.integers(0, 20)))
    return facade(size, int(rng.integers(24, 60)), int(rng.integers(16, 40)), light, seed=int(rng.integers(0, 1000)))


def structure_crops(count: int, scale: int, patch: int, seed: int = 1) -> list[np.ndarray]:
    """``count`` LR crops (float32 ``(patch, patch, 3)`` in [0, 1], the protocol's bicubic of HR
    ``patch * scale``) of random regular structures, for int8 calibration; other seeds than the
    evaluation set's images."""
    from drn_tf.core.imresize import bicubic_degrade

    rng = np.random.default_rng(seed)
    return [bicubic_degrade(_random_structure(rng, patch * scale), scale).astype(np.float32) / 255.0
            for _ in range(count)]


def random_structure_pairs(scale: int, count: int, seed: int = 1000, size: int = SIZE) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``name -> (LR, HR)`` uint8 of ``count`` random regular structures (:func:`_random_structure`, seeds other
    than the calibration crops'): held-out images for the int8 checks."""
    from drn_tf.core.imresize import bicubic_degrade

    rng = np.random.default_rng(seed)
    out = {}
    for i in range(count):
        hr = _random_structure(rng, size)
        out[f"random_{seed}_{i}"] = (bicubic_degrade(hr, scale), hr)
    return out
