"""The evaluation protocol of the SR literature on benchmark folders.

For every image of a folder (see ``../shared/data/README.md``):

1. HR = the image as stored, modcropped to a multiple of the scale. Colour
   images are RGB; single-channel images stay single-channel (Set14's
   ``bridge.png``), as the protocol says.
2. LR = MATLAB ``imresize(HR, 1/s, 'bicubic')`` on uint8
   (:func:`drn_tf.core.imresize.bicubic_degrade`), on every channel present.
3. SR = bicubic ``imresize(LR, s)`` (the baseline, ``method="bicubic"``) or
   the model. The model sees RGB: a grey LR is replicated to 3 channels and
   the model's 3 output channels are averaged back to one channel (before
   clipping and rounding). SR is clipped to [0, 1] and rounded to uint8.
4. Y = MATLAB ``rgb2ycbcr`` luma for colour images; a single-channel image is
   its own "Y" (no 16-235 luma conversion).
5. ``s`` pixels dropped on every border; PSNR (peak 255) and SSIM
   (Gaussian 11 / 1.5) on Y (:mod:`drn_tf.models.metrics`), averaged per set.

:func:`evaluate_folders` returns per-image and per-set mean results;
``drn evaluate`` (``drn_tf/cli/commands/evaluate.py``) prints and saves them.
Nothing here imports TensorFlow; a model is only needed for
``method="model"`` (any backend).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from drn_tf.core.imageio import ImageReadError, list_images
from drn_tf.core.metrics import to_uint8
from drn_tf.core.protocol import PROTOCOL, evaluate_pair, load_pair, upscale_bicubic
from drn_tf.inference.upscale import super_resolve


@dataclass
class ImageResult:
    name: str
    psnr: float
    ssim: float
    channels: int  # 3 (colour) or 1 (grey, metrics on the single channel)
    hr_shape: tuple  # (H, W) after modcrop
    seconds: float = 0.0  # time of the SR step only


@dataclass
class SetResult:
    name: str
    path: str
    scale: int
    method: str
    images: list = field(default_factory=list)  # ImageResult
    skipped: list = field(default_factory=list)  # "file: reason"

    @property
    def psnr(self) -> float:
        return float(np.mean([r.psnr for r in self.images])) if self.images else float("nan")

    @property
    def ssim(self) -> float:
        return float(np.mean([r.ssim for r in self.images])) if self.images else float("nan")

    def to_dict(self) -> dict:
        return {
            "set": self.name,
            "path": self.path,
            "scale": self.scale,
            "method": self.method,
            "images": len(self.images),
            "psnr": _finite(self.psnr),
            "ssim": _finite(self.ssim),
            "skipped": list(self.skipped),
            "per_image": [
                dict(asdict(r), hr_shape=list(r.hr_shape), psnr=_finite(r.psnr)) for r in self.images
            ],
        }


def _finite(x: float):
    """JSON has no inf/nan: PSNR of an exact match is reported as the string "inf"."""
    if math.isfinite(x):
        return float(x)
    return "inf" if x > 0 else "nan"


def upscale_model(model, lr: np.ndarray, self_ensemble: bool = False, tile=None) -> np.ndarray:
    """SR of a uint8 ``(h, w, 3|1)`` LR with ``model``; uint8 with as many channels as ``lr``.

    A grey LR is replicated to RGB for the model and the 3 output channels are
    averaged back to one (in float, before clipping and rounding).
    """
    x = lr.astype(np.float32) / 255.0
    grey = x.shape[-1] == 1
    if grey:
        x = np.repeat(x, 3, axis=-1)
    sr = super_resolve(model, x, tile=tile, self_ensemble=self_ensemble)
    if grey:
        sr = sr.mean(axis=-1, keepdims=True)
    return to_uint8(sr)


# ---------------------------------------------------------------- folders


def _default_progress(set_name: str, done: int, total: int, last: ImageResult | None, stream=None) -> None:
    stream = stream or sys.stderr
    tty = getattr(stream, "isatty", lambda: False)()
    width = 24
    filled = int(width * done / max(total, 1))
    bar = "=" * filled + "." * (width - filled)
    msg = f"{set_name}: [{bar}] {done}/{total}"
    if last is not None:
        msg += f"  {last.name} {last.psnr:.2f} dB"
    if tty:
        stream.write("\r" + msg.ljust(78)[:100] + ("\n" if done == total else ""))
        stream.flush()
    elif done == total:
        stream.write(msg + "\n")
        stream.flush()


def evaluate_folder(
    path,
    scale: int,
    model=None,
    *,
    method: str | None = None,
    self_ensemble: bool = False,
    tile=None,
    save_dir=None,
    on_error: str = "raise",
    progress: Callable | bool | None = None,
    name: str | None = None,
) -> SetResult:
    """Evaluate every image under ``path`` (a folder or a file).

    ``method="bicubic"`` (default when ``model`` is None) evaluates the
    bicubic baseline; otherwise ``model`` (a ``keras.Model``) is run on each
    whole LR image (``tile``: LR tile side for big images, see
    :func:`drn_tf.inference.upscale.super_resolve`). ``save_dir``: SR images are
    written there as PNG under their original file names. ``on_error``:
    ``"raise"`` (default: a benchmark with a missing image is not comparable)
    or ``"skip"`` (reported in ``SetResult.skipped`` and as a warning).
    ``progress``: True for a bar on stderr, or a callable
    ``(set_name, done, total, last_result)``.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    method = method or ("bicubic" if model is None else "model")
    if method not in ("bicubic", "model"):
        raise ValueError(f"method must be 'bicubic' or 'model', got {method!r}")
    if method == "model" and model is None:
        raise ValueError("method='model' needs a model")
    scale = int(scale)
    path = Path(path)
    files = list_images(path)
    if not files:
        raise FileNotFoundError(f"{path}: no images found")
    set_name = name or (path.stem if path.is_file() else path.name)
    result = SetResult(set_name, str(path), scale, "bicubic" if method == "bicubic" else "model")
    if progress is True:
        progress = _default_progress
    save_dir = Path(save_dir) if save_dir else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        try:
            lr, hr = load_pair(f, scale)
        except ImageReadError as exc:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
            result.skipped.append(str(exc))
            if progress:
                progress(set_name, i + 1, len(files), None)
            continue
        t0 = time.perf_counter()
        if method == "bicubic":
            sr = upscale_bicubic(lr, scale)
        else:
            sr = upscale_model(model, lr, self_ensemble=self_ensemble, tile=tile)
        seconds = time.perf_counter() - t0
        psnr, ssim = evaluate_pair(sr, hr, scale)
        rel = f.relative_to(path) if path.is_dir() else Path(f.name)
        r = ImageResult(str(rel), psnr, ssim, int(hr.shape[-1]), tuple(int(v) for v in hr.shape[:2]), seconds)
        result.images.append(r)
        if save_dir is not None:
            from drn_tf.core.imageio import save_image

            out = save_dir / rel.with_suffix(".png")
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(sr, out, overwrite=True)  # atomic; ImageWriteError names the file and the reason
        if progress:
            progress(set_name, i + 1, len(files), r)
    if not result.images:
        raise FileNotFoundError(f"{path}: no readable images")
    return result


def evaluate_folders(paths, scale: int, model=None, *, save_dir=None, **kwargs) -> list[SetResult]:
    """:func:`evaluate_folder` for each path; SR images of set ``X`` go to ``save_dir/X``.

    Sets whose folder names clash get a numeric suffix (``Set5``, ``Set5_2``).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    results, seen = [], {}
    for p in paths:
        p = Path(p)
        base = p.stem if p.is_file() else p.name or str(p)
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base]}"
        sub = Path(save_dir) / name if save_dir else None
        results.append(evaluate_folder(p, scale, model, save_dir=sub, name=name, **kwargs))
    return results


def markdown_table(results: list[SetResult], title: str | None = None) -> str:
    """``| set | images | PSNR | SSIM |`` with one row per set."""
    lines = []
    if title:
        lines += [title, ""]
    lines += ["| set | images | PSNR (dB) | SSIM |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {len(r.images)} | {r.psnr:.2f} | {r.ssim:.4f} |")
    return "\n".join(lines)


def results_to_dict(results: list[SetResult], **meta) -> dict:
    return dict(meta, protocol=PROTOCOL, sets=[r.to_dict() for r in results])
