"""Degradations of a low-resolution image beyond the protocol's bicubic: JPEG and Gaussian noise.

Photos people upscale are rarely the clean bicubic LR of the benchmarks; most are JPEGs.
The same operations serve two purposes, so they live here once (numpy and Pillow only):

- **Measuring** (``drn evaluate --degrade jpeg:75``): the protocol's LR is degraded before
  any method sees it, bicubic included (:func:`parse_degradations`, :class:`LRDegradation`).
- **Training** (``data.degrade`` in the training config): a small pool of degraded copies of
  each training LR, made once per run and cut like the clean LR (:class:`TrainDegradation`,
  :func:`degraded_copies`); which patch comes from which copy is drawn from the patch stream's
  seed, so an exact resume stays exact.

JPEG is Pillow's encoder at the given quality with its default 4:2:0 chroma subsampling for
colour (what cameras, phones and web pipelines write) and plain luma for grey images. Noise is
additive Gaussian noise of standard deviation ``sigma`` in 0-255 levels, added before the JPEG
(sensor noise comes before compression), rounded and clipped to uint8.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import asdict, dataclass

import numpy as np

# ------------------------------------------------------------------ operations


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (uint8 ``(h, w, 3)`` or ``(h, w, 1)``) saved as a JPEG of ``quality`` (1-95+) and
    decoded again; same shape and dtype."""
    from PIL import Image

    grey = image.ndim == 3 and image.shape[-1] == 1
    im = Image.fromarray(image[..., 0] if grey else image)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L" if grey else "RGB"))
    return out[..., None] if grey else out


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` + N(0, ``sigma``) per pixel and channel (0-255 levels), rounded and clipped to uint8."""
    noisy = image.astype(np.float32) + rng.normal(0.0, float(sigma), image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ reading a JPEG's quality

# The IJG (libjpeg) standard luminance quantisation table, natural order; quality Q scales it.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.int64)


def _ijg_table_sum(quality: int) -> int:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return int(np.clip((_IJG_LUMA * scale + 50) // 100, 1, 255).sum())


_IJG_SUMS = {q: _ijg_table_sum(q) for q in range(1, 101)}


def estimate_jpeg_quality(path) -> int | None:
    """The IJG quality (1-100) whose luminance table is nearest to the file's, from the JPEG header alone
    (nothing is decoded); None for a file that is not a JPEG. Encoders with their own tables (cameras,
    Photoshop) get the IJG quality of the same overall coarseness."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or not getattr(im, "quantization", None):
                return None
            luma = np.asarray(im.quantization[0], np.int64)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):  # size limits are checked elsewhere
        return None
    total = int(luma.sum())
    return min(_IJG_SUMS, key=lambda q: (abs(_IJG_SUMS[q] - total), -q))


@dataclass(frozen=True)
class InputKind:
    """Which model an input calls for: ``photo`` (JPEG-trained) or ``clean``, and why."""

    kind: str
    jpeg_quality: int | None = None

    @property
    def reason(self) -> str:
        if self.jpeg_quality is None:
            return "not a JPEG"
        return f"JPEG, quality ~{self.jpeg_quality}"

    @property
    def compressed(self) -> bool:
        """A JPEG at a quality where the photo model is the better one."""
        return self.jpeg_quality is not None and self.jpeg_quality <= PHOTO_MAX_QUALITY


KINDS = ("auto", "clean", "photo")

# Up to this JPEG quality the photo models beat the clean ones; above it (quality 95) the clean model is the
# better one (docs/photos.md: drn_s_x2 35.88 / 32.13 dB against the photo model's 35.77 / 31.92 on Set5 /
# Set14 at quality 95; at 85 the photo model leads by 1.2 / 0.6 dB).
PHOTO_MAX_QUALITY = 90


def input_kind(path, kind: str = "auto") -> InputKind:
    """``kind`` ``clean``/``photo`` as given; ``auto``: ``photo`` for a JPEG file (its quality read from the
    header) of quality up to :data:`PHOTO_MAX_QUALITY`, ``clean`` otherwise (a PNG that was once a JPEG
    needs ``photo`` said)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    quality = estimate_jpeg_quality(path)
    if kind != "auto":
        return InputKind(kind, quality)
    found = InputKind("clean", quality)
    return InputKind("photo", quality) if found.compressed else found


# ------------------------------------------------------------------ measuring


@dataclass(frozen=True)
class LRDegradation:
    """One degradation of an evaluation LR: ``kind`` ``clean`` | ``jpeg`` (``value`` = quality) |
    ``noise`` (``value`` = sigma). Calling it degrades an LR; noise is seeded by ``key`` (e.g. the
    image's name) so every method sees the same noisy LR."""

    kind: str
    value: float | None = None

    @property
    def label(self) -> str:
        if self.kind == "clean":
            return "clean"
        return f"{self.kind}:{self.value:g}"

    def __call__(self, lr: np.ndarray, key: str = "") -> np.ndarray:
        if self.kind == "clean":
            return lr
        if self.kind == "jpeg":
            return jpeg(lr, int(self.value))
        rng = np.random.default_rng([zlib.crc32(key.encode()), int(self.value * 1000)])
        return gaussian_noise(lr, self.value, rng)


_KINDS = {  # kind -> (check of its value, what the value is)
    "clean": (None, ""),
    "jpeg": (lambda v: float(v).is_integer() and 1 <= v <= 100, "a JPEG quality, an integer 1-100"),
    "noise": (lambda v: 0 < v <= 100, "a noise sigma in 0-255 levels, > 0 and <= 100"),
}


def parse_degradations(text: str) -> list[LRDegradation]:
    """``"jpeg:95,85,75"`` / ``"clean,jpeg:75,noise:5"`` -> degradations, in order, without repeats.

    A bare number repeats the kind before it (``jpeg:95,85`` = ``jpeg:95,jpeg:85``). Raises
    ValueError with the offending item named.
    """
    out, kind = [], None
    for raw in (t.strip() for t in str(text).split(",")):
        if not raw:
            continue
        name, _, value = raw.partition(":")
        if name.lower() in _KINDS:
            kind = name.lower()
        elif not value and kind not in (None, "clean"):
            name, value = kind, raw
        else:
            raise ValueError(f"{raw!r}: expected clean, jpeg:QUALITY or noise:SIGMA (e.g. jpeg:95,85,75,50)")
        check, what = _KINDS[kind]
        if check is None:
            if value:
                raise ValueError(f"{raw!r}: clean takes no value")
            item = LRDegradation("clean")
        else:
            try:
                v = float(value)
            except ValueError:
                raise ValueError(f"{raw!r}: {kind} needs {what}") from None
            if not check(v):
                raise ValueError(f"{raw!r}: {kind} needs {what}")
            item = LRDegradation(kind, v)
        if item not in out:
            out.append(item)
    if not out:
        raise ValueError("no degradation given (e.g. jpeg:75 or clean,jpeg:95,85,75,50)")
    return out


# ------------------------------------------------------------------ training


@dataclass(frozen=True)
class TrainDegradation:
    """The ``data.degrade`` section of a training config.

    ``prob``: share of training patches cut from a degraded copy of their LR (0: clean only, the
    default). ``pool``: degraded copies made of each training LR. Each copy is a JPEG at a quality
    drawn uniformly from ``jpeg_quality`` (``[low, high]``), after Gaussian noise of a sigma drawn
    from ``noise_sigma`` with probability ``noise_prob``.
    """

    prob: float = 0.0
    pool: int = 3
    jpeg_quality: tuple = (55, 95)
    noise_prob: float = 0.0
    noise_sigma: tuple = (1.0, 8.0)

    @property
    def enabled(self) -> bool:
        return self.prob > 0

    def to_config(self) -> dict:
        d = asdict(self)
        d["jpeg_quality"] = [int(v) for v in self.jpeg_quality]
        d["noise_sigma"] = [float(v) for v in self.noise_sigma]
        return d

    @classmethod
    def from_config(cls, value) -> "TrainDegradation":
        """From a config mapping (missing keys take their defaults); ValueError names a bad key."""
        if value in (None, False, {}):
            return cls()
        if not isinstance(value, dict):
            raise ValueError(f"data.degrade must be a mapping (keys: {', '.join(cls.__dataclass_fields__)}), "
                             f"got {value!r}")
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"data.degrade: unknown key(s) {', '.join(unknown)}; keys: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        d = dict(asdict(cls()), **value)
        prob, noise_prob = _number("prob", d["prob"], 0, 1), _number("noise_prob", d["noise_prob"], 0, 1)
        pool = _number("pool", d["pool"], 1, 64)
        if not float(pool).is_integer():
            raise ValueError(f"data.degrade.pool must be an integer, got {d['pool']!r}")
        q = _pair("jpeg_quality", d["jpeg_quality"], 1, 100)
        if not all(float(v).is_integer() for v in q):
            raise ValueError(f"data.degrade.jpeg_quality must be integers, got {d['jpeg_quality']!r}")
        sigma = _pair("noise_sigma", d["noise_sigma"], 0, 100)
        return cls(float(prob), int(pool), (int(q[0]), int(q[1])), float(noise_prob), sigma)

    def copy_recipe(self, seed: int, image: int, copy: int) -> tuple[float, int]:
        """(noise sigma, 0 for none; JPEG quality) of copy ``copy`` of training image ``image``: a pure
        function of ``(seed, image, copy)``."""
        rng = np.random.default_rng([int(seed), int(image), int(copy), 0xDE9])
        q = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        noisy = rng.random() < self.noise_prob
        sigma = float(rng.uniform(*self.noise_sigma)) if noisy else 0.0
        return sigma, q

    def copy_of(self, lr: np.ndarray, seed: int, image: int, copy: int) -> np.ndarray:
        """Degraded copy ``copy`` of training LR ``image`` (deterministic)."""
        sigma, q = self.copy_recipe(seed, image, copy)
        if sigma > 0:
            lr = gaussian_noise(lr, sigma, np.random.default_rng([int(seed), int(image), int(copy), 0x5EED]))
        return jpeg(lr, q)

    def versions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Which LR version each of ``n`` patches is cut from: 0 = clean, ``1..pool`` = a degraded copy."""
        degraded = rng.random(n) < self.prob
        which = rng.integers(1, self.pool + 1, size=n)
        return np.where(degraded, which, 0)


def degraded_copies(lrs, degrade: TrainDegradation, seed: int) -> list[list[np.ndarray]]:
    """``out[k][i]``: degraded copy ``k + 1`` of ``lrs[i]`` (``degrade.pool`` copies of every image)."""
    return [[degrade.copy_of(lr, seed, i, k) for i, lr in enumerate(lrs)] for k in range(degrade.pool)]


def version_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of the LR versions of batch ``index`` of ``epoch``: apart from the patch positions'
    stream, so a clean run's patches are unchanged by the degradation code."""
    return np.random.default_rng([int(seed), int(epoch), int(index), 0xDE9])


def _number(key, v, lo, hi):
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"data.degrade.{key} must be a number, got {v!r}") from None
    if not lo <= f <= hi:
        raise ValueError(f"data.degrade.{key} must be in [{lo}, {hi}], got {v!r}")
    return f


def _pair(key, v, lo, hi):
    if isinstance(v, (int, float)):
        v = [v, v]
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ValueError(f"data.degrade.{key} must be [low, high], got {v!r}")
    a, b = (_number(key, x, lo, hi) for x in v)
    if a > b:
        raise ValueError(f"data.degrade.{key} must be [low, high] with low <= high, got {v!r}")
    return (a, b)
