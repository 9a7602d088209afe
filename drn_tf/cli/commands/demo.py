"""``drn demo``: the main job on a bundled photo, with no arguments.

Takes ``assets/sample.jpg`` (public domain, see ``assets/README.md``) or
``--image``, makes its low-resolution version by the protocol's MATLAB
bicubic, upscales that with bicubic and with the DRN model, and writes the
images and a side-by-side comparison figure (zoomed crops, PSNR/SSIM on Y in
the titles) into ``./drn-demo/`` (or ``--out``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from drn_tf.core.utils import assets_dir, write_atomic

SAMPLE = assets_dir() / "sample.jpg"
CROP = 96  # HR pixels shown in the zoomed crops


def add_parser(sub, help_text):
    p = sub.add_parser(
        "demo",
        help=help_text,
        description="Upscale a bundled sample photo (or --image) after downscaling it by the scale: "
        "bicubic vs DRN, images and a comparison figure with PSNR written to ./drn-demo/.",
    )
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default: the model's, else 2)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="FILE", help="a trained .keras model file")
    src.add_argument("--preset", metavar="NAME", help="a preset with a bundled trained model (default drn_x{scale})")
    p.add_argument("--image", metavar="FILE", help="use this photo instead of the bundled sample")
    p.add_argument("--out", metavar="DIR", default="drn-demo", help="output folder (default: ./drn-demo)")
    p.set_defaults(func=run)


def pick_crop(hr, bicubic, size: int) -> tuple[int, int, int]:
    """Top-left (y, x) and side of the ``size`` window where bicubic errs most."""
    import numpy as np

    h, w = hr.shape[:2]
    size = min(size, h, w)
    err = np.abs(hr.astype(np.float32) - bicubic.astype(np.float32)).sum(axis=-1)
    c = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, h - size + 1, 4)
    xs = np.arange(0, w - size + 1, 4)
    sums = c[ys[:, None] + size, xs[None, :] + size] - c[ys[:, None], xs[None, :] + size] \
        - c[ys[:, None] + size, xs[None, :]] + c[ys[:, None], xs[None, :]]
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(ys[iy]), int(xs[ix]), size


def comparison_figure(hr, lr, bicubic, sr, scale: int, scores: dict, model_name: str, crop):
    """Matplotlib (Agg) figure: whole HR with the crop box, then zoomed crops."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    y, x, n = crop
    s = scale
    panels = [
        (hr, "original (HR)"),
        (lr[y // s : (y + n) // s, x // s : (x + n) // s], f"input: {lr.shape[1]}x{lr.shape[0]} (1/{s})"),
        (bicubic[y : y + n, x : x + n], f"bicubic x{s}\nPSNR {scores['bicubic'][0]:.2f} dB, SSIM {scores['bicubic'][1]:.4f}"),
        (sr[y : y + n, x : x + n], f"{model_name} x{s}\nPSNR {scores['drn'][0]:.2f} dB, SSIM {scores['drn'][1]:.4f}"),
        (hr[y : y + n, x : x + n], "original (crop)"),
    ]
    fig = Figure(figsize=(3.2 * len(panels), 3.9), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest", cmap="gray" if img.ndim == 2 else None)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].add_patch(Rectangle((x - 0.5, y - 0.5), n, n, fill=False, edgecolor="red", linewidth=1.5))
    fig.suptitle(f"x{s} super-resolution: Y-channel PSNR/SSIM over the whole image ({s}-pixel border dropped)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def _save_figure(fig, path: Path):
    """The figure as a PNG file, written atomically."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


def run(args):
    from drn_tf.cli.base import UserError
    from drn_tf.core.imageio import (
        ImageReadError,
        ImageWriteError,
        read_image,
        save_image,
    )
    from drn_tf.core.imresize import bicubic_degrade, bicubic_upscale, modcrop
    from drn_tf.core.metrics import psnr_y, ssim_y
    from drn_tf.core.tiling import auto_tile
    from drn_tf.inference.upscale import upscale_array
    from drn_tf.models.resolve import (
        ModelError,
        model_receptive_radius,
        model_scale,
        resolve_model,
    )

    image_path = Path(args.image) if args.image else SAMPLE
    try:
        hr = read_image(image_path, mode="rgb")
    except ImageReadError as exc:
        raise UserError(str(exc)) from None
    try:
        model = resolve_model(args.model, args.preset, args.scale)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    s = model_scale(model)
    model_name = Path(args.model).stem if args.model else (args.preset or f"drn_x{s}")
    hr = modcrop(hr, s)
    if min(hr.shape[:2]) < 2 * s:
        raise UserError(f"{image_path}: {hr.shape[1]}x{hr.shape[0]} is too small for a x{s} demo")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output folder {out}: {exc.strerror or exc}") from None

    lr = bicubic_degrade(hr, s)
    bicubic = bicubic_upscale(lr, s)
    overlap = model_receptive_radius(model)
    sr = upscale_array(lr, model, tile=auto_tile(lr.shape, "auto", overlap), tile_overlap=overlap)
    scores = {}
    for key, img in (("bicubic", bicubic), ("drn", sr)):
        scores[key] = (psnr_y(img, hr, s), ssim_y(img, hr, s) if min(hr.shape[:2]) > 2 * s + 11 else float("nan"))
    y, x, n = pick_crop(hr, bicubic, CROP)
    crop = (y - y % s, x - x % s, n - n % s)
    files = {
        "original": out / "original.png",
        "input": out / f"input_lr_x{s}.png",
        "bicubic": out / f"bicubic_x{s}.png",
        "drn": out / f"drn_x{s}.png",
        "figure": out / f"comparison_x{s}.png",
    }
    try:
        for key, img in (("original", hr), ("input", lr), ("bicubic", bicubic), ("drn", sr)):
            save_image(img, files[key], overwrite=True)
        fig = comparison_figure(hr, lr, bicubic, sr, s, scores, model_name, crop)
        _save_figure(fig, files["figure"])
    except (ImageWriteError, OSError) as exc:
        raise UserError(f"cannot write the demo images into {out}: {getattr(exc, 'strerror', None) or exc}") from None
    name = image_path.name
    print(f"drn demo: {name} ({hr.shape[1]}x{hr.shape[0]}) -> {lr.shape[1]}x{lr.shape[0]} by bicubic, "
          f"upscaled x{s} with bicubic and {model_name}")
    print(f"  bicubic      PSNR {scores['bicubic'][0]:6.2f} dB  SSIM {scores['bicubic'][1]:.4f}")
    print(f"  {model_name:12s} PSNR {scores['drn'][0]:6.2f} dB  SSIM {scores['drn'][1]:.4f}")
    print(f"wrote {files['figure']}")
    for key in ("original", "input", "bicubic", "drn"):
        print(f"      {files[key]}")
    sys.stdout.flush()
    return 0
