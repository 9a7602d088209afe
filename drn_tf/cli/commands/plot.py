"""``drn plot``: training curves of one or more runs as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

# curves from CSV files: no Keras/TensorFlow start-up needed
NEEDS_BACKEND = False


def add_parser(sub, help_text):
    p = sub.add_parser(
        "plot",
        help=help_text,
        description="Draw the training loss, the validation PSNR (with the bicubic baseline when the run "
        "recorded it) and the learning rate of training runs against the optimizer step. A RUN is a run "
        "directory of 'drn train' (its history.csv and run.json) or a history CSV file (also the per-epoch CSVs "
        "of the first GPU runs under assets/training/). Several runs are overlaid.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directory or history CSV file")
    p.add_argument("--out", help="PNG to write (default: <first run dir>/curves.png)")
    p.add_argument("--x", choices=["step", "epoch"], default="step", help="x axis (default: step)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--dpi", type=int, default=110, help="resolution (default 110)")
    p.set_defaults(func=run)


def load_run(arg) -> dict:
    """{label, rows, bicubic: {set: psnr}, csv} of a run directory or CSV file; raises UserError."""
    import json

    from drn_tf.cli.base import UserError
    from drn_tf.train.rundir import read_history

    path = Path(arg)
    if path.is_dir():
        csv_path = path / "history.csv"
        label = path.name
    elif path.is_file():
        csv_path = path
        label = path.stem
    else:
        raise UserError(f"{arg}: no such run directory or CSV file")
    if not csv_path.is_file():
        raise UserError(f"{path}: no history.csv (not a 'drn train' run directory, or no epoch finished yet)")
    rows = read_history(csv_path)
    if not rows:
        raise UserError(f"{csv_path}: no rows yet")
    if "loss" not in rows[0]:
        raise UserError(f"{csv_path}: no 'loss' column; not a training history")
    bicubic = {}
    info = (path if path.is_dir() else path.parent) / "run.json"
    if info.is_file():
        try:
            for name, v in json.loads(info.read_text()).get("val_sets", {}).items():
                if v.get("bicubic_psnr") is not None:
                    bicubic[name] = float(v["bicubic_psnr"])
        except (ValueError, AttributeError):
            pass
    return {"label": label, "rows": rows, "bicubic": bicubic, "csv": csv_path}


def _series(rows, x_key, y_key):
    xs, ys = [], []
    for i, r in enumerate(rows):
        y = r.get(y_key)
        if not isinstance(y, (int, float)) or not math.isfinite(y):
            continue
        x = r.get(x_key)
        if not isinstance(x, (int, float)):
            x = r.get("epoch", i + 1)
        xs.append(x)
        ys.append(y)
    return xs, ys


def psnr_keys(rows) -> list[str]:
    """Validation PSNR columns: val_<set>_psnr per set, else the plain val_psnr."""
    keys = [k for k in rows[0] if k.startswith("val_") and k.endswith("_psnr") and k != "val_psnr"]
    return keys or (["val_psnr"] if "val_psnr" in rows[0] else [])


def draw(runs, out, x_key="step", title=None, dpi=110, keep_open=False):
    """Write the figure of ``runs`` (from :func:`load_run`) to the PNG ``out``; returns its path
    (and the matplotlib figure, left open, with ``keep_open=True``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_lr = any("lr" in r["rows"][0] for r in runs)
    ncols = 3 if has_lr else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.0))
    ax_loss, ax_psnr = axes[0], axes[1]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    any_psnr = False
    drawn_bicubic = set()
    for i, r in enumerate(runs):
        c = colors[i % len(colors)]
        rows = r["rows"]
        xs, ys = _series(rows, x_key, "loss")
        ax_loss.plot(xs, ys, color=c, label=r["label"])
        for j, key in enumerate(psnr_keys(rows)):
            xs, ys = _series(rows, x_key, key)
            if not ys:
                continue
            any_psnr = True
            set_name = key[len("val_"):-len("_psnr")] or "val"
            style = ["-", "--", ":", "-."][j % 4]
            ax_psnr.plot(xs, ys, style, marker="o", ms=3, color=c, label=f"{r['label']} {set_name}")
            bic = r["bicubic"].get(set_name)
            if bic is not None and set_name not in drawn_bicubic:
                drawn_bicubic.add(set_name)
                ax_psnr.axhline(bic, color="grey", ls=style, lw=1, label=f"bicubic {set_name} {bic:.2f} dB")
        if has_lr:
            xs, ys = _series(rows, x_key, "lr")
            axes[2].plot(xs, ys, color=c, label=r["label"])
    xlabel = "optimizer step" if x_key == "step" else "epoch"
    ax_loss.set(title="training L1 loss", xlabel=xlabel, ylabel="loss")
    if all(y > 0 for r in runs for y in _series(r["rows"], x_key, "loss")[1]):
        ax_loss.set_yscale("log")
    ax_psnr.set(title="validation Y-PSNR", xlabel=xlabel, ylabel="dB")
    if not any_psnr:
        ax_psnr.text(0.5, 0.5, "no validation in these runs", ha="center", va="center", transform=ax_psnr.transAxes)
    else:
        ax_psnr.legend(fontsize=8)
    if has_lr:
        axes[2].set(title="learning rate", xlabel=xlabel)
    if len(runs) > 1:
        ax_loss.legend(fontsize=8)
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or ", ".join(r["label"] for r in runs))
    fig.tight_layout()
    import io

    from drn_tf.core.utils import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    out = write_atomic(out, buf.getvalue())
    if keep_open:
        return out, fig
    plt.close(fig)
    return out


def run(args):
    from drn_tf.cli.base import UserError

    runs = [load_run(a) for a in args.runs]
    if args.out:
        out = Path(args.out)
    else:
        first = Path(args.runs[0])
        out = (first if first.is_dir() else first.parent) / "curves.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: must be a .png file")
    path = draw(runs, out, args.x, args.title, args.dpi)
    for r in runs:
        rows = r["rows"]
        keys = psnr_keys(rows)
        best = None
        if keys:
            vals = [x.get(keys[0]) for x in rows if isinstance(x.get(keys[0]), float) and math.isfinite(x.get(keys[0]))]
            best = max(vals) if vals else None
        last = rows[-1]
        text = f"{r['label']}: {len(rows)} epochs, step {last.get('step', '?')}, loss {last['loss']:.4g}"
        if best is not None:
            text += f", best {keys[0][len('val_'):-len('_psnr')] or 'val'} PSNR {best:.2f} dB"
        print(text)
    print(f"wrote {path}")
    return 0
