"""``drn evaluate``: the evaluation protocol (:mod:`drn_tf.core.protocol`) on benchmark folders.

:func:`evaluate_folders` returns per-image and per-set mean results;
``drn evaluate`` (``drn_tf/cli/commands/evaluate.py``) prints and saves them.
Nothing here imports TensorFlow; a model is only needed for
``method="model"`` (any backend).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from drn_tf.core.imageio import list_images
from drn_tf.core.protocol import (
    PROTOCOL,
    evaluate_pair,
    iter_pairs,
    model_input,
    model_output,
    upscale_bicubic,
)
from drn_tf.inference.tiled import super_resolve


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
    averaged back to one (in float, before clipping and rounding):
    :func:`drn_tf.core.protocol.model_input`, :func:`drn_tf.core.protocol.model_output`.
    """
    sr = super_resolve(model, model_input(lr), tile=tile, self_ensemble=self_ensemble)
    return model_output(sr, lr.shape[-1] == 1)


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
    degrade: Callable | None = None,
) -> SetResult:
    """Evaluate every image under ``path`` (a folder or a file).

    ``method="bicubic"`` (default when ``model`` is None) evaluates the
    bicubic baseline; otherwise ``model`` (a ``keras.Model``) is run on each
    whole LR image (``tile``: LR tile side for big images, see
    :func:`drn_tf.inference.tiled.super_resolve`). ``save_dir``: SR images are
    written there as PNG under their original file names. ``on_error``:
    ``"raise"`` (default: a benchmark with a missing image is not comparable)
    or ``"skip"`` (reported in ``SetResult.skipped`` and as a warning).
    ``progress``: True for a bar on stderr, or a callable
    ``(set_name, done, total, last_result)``. ``degrade``: applied to each protocol LR before the
    method sees it, called as ``degrade(lr, key=relative_name)`` (a
    :class:`drn_tf.core.degrade.LRDegradation`: ``drn evaluate --degrade``).
    """
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
    pairs = iter_pairs(files, scale, on_error=on_error, label=f"benchmark set {set_name}", skipped=result.skipped)
    for i, (f, lr, hr) in enumerate(pairs):
        if lr is None:  # skipped, with a warning
            if progress:
                progress(set_name, i + 1, len(files), None)
            continue
        rel = f.relative_to(path) if path.is_dir() else Path(f.name)
        if degrade is not None:
            lr = degrade(lr, key=str(rel))
        t0 = time.perf_counter()
        if method == "bicubic":
            sr = upscale_bicubic(lr, scale)
        else:
            sr = upscale_model(model, lr, self_ensemble=self_ensemble, tile=tile)
        seconds = time.perf_counter() - t0
        psnr, ssim = evaluate_pair(sr, hr, scale)
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


@dataclass
class DegradedResult:
    """One degradation of ``drn evaluate --degrade``: the method's and bicubic's results on the same
    degraded LR (``model`` is None when the method is bicubic itself)."""

    degradation: str
    bicubic: list  # SetResult per set
    model: list | None = None

    def to_dict(self) -> dict:
        out = {"input": self.degradation, "bicubic": [r.to_dict() for r in self.bicubic]}
        if self.model is not None:
            out["sets"] = [r.to_dict() for r in self.model]
            out["gain_db"] = {m.name: _finite(m.psnr - b.psnr) for m, b in zip(self.model, self.bicubic)}
        return out


def evaluate_degraded(paths, scale: int, model=None, degradations=(), *, save_dir=None, progress=None,
                      **kwargs) -> list[DegradedResult]:
    """:func:`evaluate_folders` once per degradation (``drn_tf.core.degrade.parse_degradations``), the model
    and bicubic on the same degraded LR. SR images of set ``X`` under degradation ``D`` go to
    ``save_dir/D/X`` (``:`` in ``D`` written as ``_``)."""
    out = []
    for d in degradations:
        sub = Path(save_dir) / d.label.replace(":", "_") if save_dir else None

        def bar(set_name, *rest, _label=d.label):
            if progress:
                (_default_progress if progress is True else progress)(f"{set_name} {_label}", *rest)

        bicubic = evaluate_folders(paths, scale, None, method="bicubic", degrade=d, progress=bar if progress else None,
                                   save_dir=sub if model is None else None,
                                   **{k: v for k, v in kwargs.items() if k in ("on_error",)})
        results = None if model is None else evaluate_folders(
            paths, scale, model, degrade=d, save_dir=sub, progress=bar if progress else None, **kwargs)
        out.append(DegradedResult(d.label, bicubic, results))
    return out


def degraded_table(results: list[DegradedResult], title: str | None = None) -> str:
    """``| set | input | images | PSNR | SSIM | bicubic | gain |`` (the method's gain over bicubic on the same
    degraded LR), one row per set and degradation."""
    lines = [title, ""] if title else []
    with_model = results and results[0].model is not None
    if with_model:
        lines += ["| set | input | images | PSNR (dB) | SSIM | bicubic (dB) | gain (dB) |",
                  "|---|---|---:|---:|---:|---:|---:|"]
    else:
        lines += ["| set | input | images | PSNR (dB) | SSIM |", "|---|---|---:|---:|---:|"]
    sets = [r.name for r in results[0].bicubic] if results else []
    for i, name in enumerate(sets):
        for d in results:
            b = d.bicubic[i]
            if with_model:
                m = d.model[i]
                lines.append(f"| {name} | {d.degradation} | {len(m.images)} | {m.psnr:.2f} | {m.ssim:.4f} | "
                             f"{b.psnr:.2f} | {m.psnr - b.psnr:+.2f} |")
            else:
                lines.append(f"| {name} | {d.degradation} | {len(b.images)} | {b.psnr:.2f} | {b.ssim:.4f} |")
    return "\n".join(lines)


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
