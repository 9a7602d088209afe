"""``drn plot``: curves of run directories / history CSVs to PNG."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from drn_tf.cli.commands.plot import draw, load_run
from drn_tf.cli.main import main

ROWS = [  # epoch, step, loss, lr, val Set5 PSNR (NaN: not validated that epoch)
    (1, 100, 0.080, 1e-3, float("nan")),
    (2, 200, 0.050, 9e-4, 30.5),
    (3, 300, 0.041, 5e-4, float("nan")),
    (4, 400, 0.035, 1e-4, 33.9),
]


def make_run(path, rows=ROWS, bicubic=33.65):
    path.mkdir()
    with open(path / "history.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "step", "loss", "lr", "val_psnr", "val_ssim", "val_Set5_psnr", "val_Set5_ssim",
                    "patches_per_s", "wall_s"])
        for e, s, loss, lr, p in rows:
            w.writerow([e, s, loss, lr, p, 0.9, p, 0.9, 100.0, 10.0 * e])
    (path / "run.json").write_text(json.dumps({"val_sets": {"Set5": {"bicubic_psnr": bicubic}}}))
    return path


def run_cli(capsys, *args):
    rc = main(["plot", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_plot_writes_a_png_with_the_curves(tmp_path, capsys):
    run = make_run(tmp_path / "r1")
    rc, out, err = run_cli(capsys, str(run))
    assert rc == 0, err
    png = run / "curves.png"
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 2 * im.size[1]
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.std() > 10  # not a blank canvas
    assert "4 epochs, step 400" in out and "best Set5 PSNR 33.90 dB" in out


def test_figure_content(tmp_path):
    import matplotlib.pyplot as plt

    runs = [load_run(make_run(tmp_path / "a")), load_run(make_run(tmp_path / "b", ROWS[:2]))]
    path, fig = draw(runs, tmp_path / "c.png", keep_open=True)
    try:
        ax_loss, ax_psnr, ax_lr = fig.axes
        loss_a = ax_loss.lines[0]
        assert list(loss_a.get_xdata()) == [100, 200, 300, 400]
        np.testing.assert_allclose(loss_a.get_ydata(), [0.08, 0.05, 0.041, 0.035])
        psnr = [ln for ln in ax_psnr.lines if ln.get_label() == "a Set5"][0]
        assert list(psnr.get_xdata()) == [200, 400]  # epochs without validation are left out
        bicubic = [ln for ln in ax_psnr.lines if ln.get_label().startswith("bicubic Set5")]
        assert len(bicubic) == 1 and bicubic[0].get_ydata()[0] == pytest.approx(33.65)
        assert len(ax_lr.lines) == 2
        assert ax_loss.get_yscale() == "log"
    finally:
        plt.close(fig)
    assert path.is_file()


def test_train_gpu_csv_and_epoch_axis(tmp_path, capsys):
    f = tmp_path / "drn_x2.csv"  # training/train_gpu.py's format: no step column
    f.write_text("epoch,wall_s,loss,lr,val_psnr,val_ssim,patches_seen\n1,10,0.05,0.0005,31.0,0.9,8000\n"
                 "2,20,0.04,0.0004,32.5,0.91,16000\n")
    rc, out, err = run_cli(capsys, str(f), "--x", "epoch", "--out", str(tmp_path / "g.png"))
    assert rc == 0, err
    assert (tmp_path / "g.png").is_file() and "best val PSNR 32.50 dB" in out


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no such run directory"),
    (lambda p: p.mkdir(), "no history.csv"),
    (lambda p: (p.mkdir(), (p / "history.csv").write_text("epoch,step,loss\n")), "no rows yet"),
])
def test_plot_errors_are_one_line(tmp_path, capsys, setup, message):
    target = tmp_path / "run"
    setup(target)
    rc, _, err = run_cli(capsys, str(target))
    assert rc == 2 and message in err and "Traceback" not in err


def test_plot_rejects_non_png_output(tmp_path, capsys):
    run = make_run(tmp_path / "r")
    rc, _, err = run_cli(capsys, str(run), "--out", str(tmp_path / "x.jpg"))
    assert rc == 2 and ".png" in err
