"""``drn beam``: output sizes as ``drn upscale`` gives them, outputs checked before Beam starts, the
failure stage of an existing output, and the temporary files of a stopped run removed (on Ctrl-C /
SIGTERM and when a run resumes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

if os.environ.get("CI"):
    import apache_beam  # noqa: F401  (CI installs the test extra: it must run there)
else:
    pytest.importorskip("apache_beam", reason="apache-beam not installed (pip install -e '.[test]')")

from drn_tf.cli.main import main  # noqa: E402
from drn_tf.inference import beam as B  # noqa: E402
from drn_tf.inference.beam_temp import FAILURES_TEMP_PREFIX, sweep, temporary_name  # noqa: E402
from drn_tf.inference.outsize import SizeRequest  # noqa: E402


def _images(folder: Path, sizes=((13, 17), (20, 11), (16, 16))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def _leftovers(folder: Path) -> list:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(".") or p.name.startswith("beam-temp"))


# ---------------------------------------------------------------- sizes


def test_layout_names_and_refuses_sizes_like_drn_upscale(tmp_path):
    from drn_tf.inference.files import Job, output_path

    src = tmp_path / "in" / "a.png"
    for request in (SizeRequest(outscale=1.5), SizeRequest(width=1000), SizeRequest(height=80),
                    SizeRequest(width=30, height=20), SizeRequest(max_side=64)):
        layout = B.Layout(str(tmp_path / "o"), 2, request=request)
        want = output_path(Job(src, Path("a.png")), scale=request.label(), out=tmp_path / "o", out_is_file=False,
                           fmt=None)
        assert layout.destination(str(src)) == str(want)
        inner = B.Layout(str(tmp_path / "in"), 2, request=request, base=str(tmp_path / "in"))
        assert inner.looks_like_output(str(want.parent.parent / "in" / want.name))
    with pytest.raises(ValueError, match="over the limit"):
        B.Layout("o", 2, request=SizeRequest(outscale=250.0)).check_size(200, 200)
    with pytest.raises(ValueError, match="more than 4 models"):
        B.Layout("o", 2, request=SizeRequest(outscale=20.0), scales=(2,)).check_size(8, 8)
    B.Layout("o", 2, request=SizeRequest(outscale=20.0)).check_size(8, 8)  # x2 x3 x4 chain


@pytest.mark.slow
@pytest.mark.parametrize("option", [["--outscale", "1.5"], ["--width", "30"], ["--height", "9"], ["--max-side", "40"]])
def test_size_options_give_drn_upscales_files(tmp_path, model_files, capsys, option):
    src = _images(tmp_path / "in")
    rc = main(["upscale", str(src), "-o", str(tmp_path / "ref"), "--model", str(model_files[2]), "--runtime", "keras",
               "-q", *option])
    assert rc == 0, capsys.readouterr().err
    rc = main(["beam", str(src), str(tmp_path / "out"), "--model", str(model_files[2]), *option])
    out, err = capsys.readouterr()
    assert rc == 0, err
    label = SizeRequest(**{option[0][2:].replace("-", "_"): float(option[1]) if option[0] == "--outscale"
                           else int(option[1])}).label()
    assert f"3 image(s) upscaled to {label}" in out
    ref = sorted(p.name for p in (tmp_path / "ref").iterdir())
    assert ref == [f"p{i}_{label}.png" for i in range(3)]
    for name in ref:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_scale_and_a_size_exclude_each_other(tmp_path, capsys):
    _images(tmp_path / "in")
    rc = main(["beam", str(tmp_path / "in"), str(tmp_path / "out"), "--scale", "2", "--outscale", "3"])
    assert rc == 2 and "leave it out" in capsys.readouterr().err and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- outputs


def test_an_existing_output_is_its_own_stage(tmp_path):
    src = _images(tmp_path / "in", sizes=((9, 9),)) / "p0.png"
    layout = B.Layout(str(tmp_path / "out"), 2)
    (tmp_path / "out").mkdir()
    Path(layout.destination(str(src))).write_bytes(b"done")
    readable = SimpleNamespace(metadata=SimpleNamespace(path=str(src)))
    (tagged,) = list(B._Decode(layout, overwrite=False, skip_existing=False).process(readable))
    assert tagged.tag == B.FAILED and tagged.value["stage"] == "output" and "exists" in tagged.value["reason"]


def _no_beam_run(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the pipeline started")

    monkeypatch.setattr(B, "run", boom)


def test_output_dir_under_a_file_or_read_only_is_refused_first(tmp_path, capsys, monkeypatch):
    _images(tmp_path / "in")
    _no_beam_run(monkeypatch)
    (tmp_path / "afile").write_text("x")
    rc = main(["beam", str(tmp_path / "in"), str(tmp_path / "afile" / "out"), "--preset", "drn_s_x2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == f"drn beam: error: OUTPUT_DIR {tmp_path / 'afile' / 'out'}: {tmp_path / 'afile'} is a file, not a folder"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root ignores modes: the folder is read-only as far as os.access tells
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **k: False if os.path.realpath(p) == str(ro) else real(p, m, **k))
    try:
        rc = main(["beam", str(tmp_path / "in"), str(ro), "--preset", "drn_s_x2"])
    finally:
        ro.chmod(0o755)
    assert rc == 2 and capsys.readouterr().err.strip() == f"drn beam: error: OUTPUT_DIR {ro}: folder {ro} is not writable"


# ---------------------------------------------------------------- temporary files


def test_checking_the_pipeline_options_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    B.check_pipeline_options(["--direct_num_workers=1"])
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_what_stopped_runs_left(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    keep = [out / "a_x2.png", out / ".hidden.png", out / "sub" / ".b.png.tmp", out / "beam-temp-other"]
    for p in keep[:3]:
        p.write_bytes(b"x")
    keep[3].mkdir()
    gone = [out / temporary_name("a_x2.png"), out / "sub" / temporary_name("b_x2.jpg")]
    for p in gone:
        p.write_bytes(b"half")
    (out / (FAILURES_TEMP_PREFIX + "0123abcd") / "x").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (scratch / f"drn-beam-{int(dead.stdout)}-abc").mkdir()
    (scratch / f"drn-beam-{os.getpid()}-def").mkdir()
    assert sweep(str(out)) == 4
    assert sorted(p.name for p in scratch.iterdir()) == [f"drn-beam-{os.getpid()}-def"]  # this process: alive
    assert all(p.exists() for p in keep) and not any(p.exists() for p in gone)
    assert sweep(str(out), mine=True) == 1 and list(scratch.iterdir()) == []


_STALL = """
import sys, time
from apache_beam.io.filesystems import FileSystems
rename = FileSystems.rename
def stalled(src, dst, *a, **k):  # the output's temporary file is written: wait there
    if src and str(src[0]).endswith(".tmp"):
        time.sleep(300)
    return rename(src, dst, *a, **k)
FileSystems.rename = stalled
from drn_tf.cli.main import main
sys.exit(main())
"""


@pytest.mark.slow
@pytest.mark.parametrize("signame, status, word", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_stopped_run_leaves_nothing_and_resumes(tmp_path, model_files, signame, status, word):
    src, out, scratch = _images(tmp_path / "in"), tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(scratch))
    args = ["beam", str(src), str(out), "--model", str(model_files[2])]
    proc = subprocess.Popen([sys.executable, "-c", _STALL, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not list(out.glob(".*.tmp")):
        time.sleep(0.1)
    assert list(out.glob(".*.tmp")) and list(out.glob("beam-temp-*")), "the write never started"
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status and err.strip().splitlines()[-1] == f"drn beam: {word}", err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert _leftovers(out) == [] and list(scratch.iterdir()) == []  # no beam-pipeline-temp*, no drn-beam-*

    # a run killed outright (SIGKILL) leaves its files: the resume removes them
    (out / temporary_name("p0_x2.png")).write_bytes(b"half")
    (out / (FAILURES_TEMP_PREFIX + "feed")).mkdir()
    p = subprocess.run([sys.executable, "-m", "drn_tf.cli", *args, "--skip-existing"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert _leftovers(out) == [] and list(scratch.iterdir()) == []
    assert sorted(f.name for f in out.iterdir()) == [B.FAILURES_NAME, "p0_x2.png", "p1_x2.png", "p2_x2.png"]
    assert json.loads("[" + ",".join((out / B.FAILURES_NAME).read_text().split()) + "]") == []
