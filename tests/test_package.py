"""The package: `import drn_tf` loads nothing heavy (its public names load on
first use); the wheel carries every subpackage and the bundled models and
works installed (not editable) outside the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paths import ROOT  # noqa: E402


def test_import_loads_no_framework_and_names_load_lazily():
    code = (
        "import sys, drn_tf\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert drn_tf.get_preset('drn_x2')['config']['scale'] == 2\n"
        "assert 'keras' not in sys.modules  # presets are plain dicts\n"
        "import keras\n"
        "assert keras.saving.get_registered_object('drn_tf>DRN') is None  # not registered before use\n"
        "cls = drn_tf.DRN  # first use registers it\n"
        "assert keras.saving.get_registered_object('drn_tf>DRN') is cls\n"
        "assert drn_tf.metrics.YPSNR.__name__ == 'YPSNR' and callable(drn_tf.tfdata.make_val_dataset)\n"
        "try:\n"
        "    drn_tf.nothing\n"
        "except AttributeError as e:\n"
        "    assert 'nothing' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


# ---------------------------------------------------------------- the installed package


def test_from_preset_raises_without_bundled_file_and_fresh_is_explicit(tmp_path):
    from drn_tf.models.drn import DRN

    with pytest.raises(FileNotFoundError, match="drn_s_x2.*load_weights=False"):
        DRN.from_preset("drn_s_x2", assets_dir=tmp_path)
    with pytest.raises(ValueError, match="load_weights=False"):
        DRN.from_preset("drn_s_x2", num_groups=1)  # overrides cannot take the bundled weights
    fresh = DRN.from_preset("drn_s_x2", assets_dir=tmp_path, load_weights=False)
    assert fresh.get_config()["scale"] == 2


def _can_build_offline() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(v) for v in setuptools.__version__.split(".")[:2] if v.isdigit())
    if version < (64, 0):
        return False
    if version >= (70, 1):
        return True  # bdist_wheel is part of setuptools
    try:
        import wheel  # noqa: F401
    except ImportError:
        return False
    return True


def _source_tree(dst: Path) -> Path:
    """The files a clean clone has (tracked + new, not ignored), copied to ``dst``,
    so building does not write build/ or *.egg-info into the checkout."""
    import shutil

    r = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True)
    names = [n for n in r.stdout.decode().split("\0") if n] if r.returncode == 0 else []
    if not names:  # not a git checkout: what the build needs
        names = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                 and p.relative_to(ROOT).parts[0] in ("drn_tf", "assets", "pyproject.toml", "setup.py", "README.md")]
    for n in names:
        src = ROOT / n
        if src.is_file():
            (dst / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / n)
    return dst


def _venv_with_this_interpreters_packages(venv: Path) -> Path:
    """A fresh virtual environment that sees the packages of the interpreter running the tests (TensorFlow &
    co.; nothing is downloaded): ``--system-site-packages`` gives the base interpreter's, and a ``.pth`` file
    adds this one's own site-packages when it runs in a virtual environment itself (a user's usual set-up).
    Those folders come after the new environment's own, so the wheel installed there is what runs."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(site) / "_outer_site_packages.pth").write_text("".join(f"{p}\n" for p in ours))
    return py


def test_nested_venv_sees_this_interpreters_packages(tmp_path):
    """What the wheel test relies on, from inside a virtual environment too: keras imports in the nested one."""
    py = _venv_with_this_interpreters_packages(tmp_path / "venv")
    r = subprocess.run([str(py), "-c", "import keras, PIL, numpy, sys; print(sys.prefix)"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert Path(r.stdout.strip()) == tmp_path / "venv"


def test_import_drn_tf_keeps_tensorflows_start_up_log_quiet():
    """Library users see no TensorFlow start-up chatter (cuInit, oneDNN); DRN_VERBOSE=1 would show it."""
    code = "import drn_tf\nm = drn_tf.DRN.from_preset('drn_s_x2', load_weights=False)\nprint('ok', m.name)\n"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DRN_VERBOSE")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stderr[-2000:]
    assert r.stderr.strip() == "", r.stderr[-2000:]


@pytest.mark.slow
def test_wheel_installs_and_upscales_with_bundled_weights_outside_the_checkout(tmp_path):
    """Build the wheel, install it (not editable) into a fresh virtual environment
    and run ``drn upscale`` from a folder outside the checkout: the bundled trained
    model must come with the package (the checkout's own output, not random weights), and its
    TFLite files, so ``--runtime litert-int8`` runs without TensorFlow or Keras."""
    src = _source_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    # offline with this interpreter's setuptools (+ wheel) when it can build the
    # wheel, else in pip's isolated build environment (from PyPI)
    isolation = ["--no-build-isolation"] if _can_build_offline() else []
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(dist), str(src)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = dist.glob("drn_tf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {f"drn_tf/assets/{p}_x{s}.keras" for p in ("drn", "drn_s") for s in (2, 3, 4)}
    assert bundled | {"drn_tf/assets/sample.jpg"} <= names, sorted(names)
    packages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "drn_tf").rglob("__init__.py")}
    assert packages >= {"drn_tf", "drn_tf/cli/commands", "drn_tf/core", "drn_tf/models"}
    assert {f"{p}/__init__.py" for p in packages} <= names  # every subpackage, found by discovery

    venv = tmp_path / "venv"
    py = _venv_with_this_interpreters_packages(venv)
    # --ignore-installed: the interpreter running the tests may have drn-tf installed itself (CI installs it
    # non-editable), which pip would call "already satisfied" and leave the venv without the wheel
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    image = np.random.default_rng(7).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(image).save(work / "photo.png")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    code = ("import drn_tf, drn_tf.core.utils as u, drn_tf.cli.commands.demo as d\n"
            "print(drn_tf.__file__); print(u.assets_dir()); print(d.SAMPLE, d.SAMPLE.is_file())")
    where = subprocess.run([str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    module_file, assets, sample, sample_found = where.stdout.split()
    assert Path(module_file).is_relative_to(venv) and Path(assets).is_relative_to(venv), where.stdout + where.stderr
    assert Path(sample).is_relative_to(venv) and sample_found == "True"  # drn demo's photo came along
    r = subprocess.run([str(venv / "bin" / "drn"), "upscale", "photo.png", "-o", "out.png"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    out = np.asarray(Image.open(work / "out.png")).astype(int)

    import drn_tf
    from drn_tf.inference.upscale import upscale_array
    from drn_tf.models.drn import DRN

    expected = drn_tf.upscale(image, scale=2).astype(int)  # the checkout's bundled drn_x2
    assert out.shape == expected.shape == (80, 96, 3)
    assert np.abs(out - expected).max() <= 1
    random_weights = upscale_array(image, DRN.from_preset("drn_x2", load_weights=False)).astype(int)
    assert np.abs(out - random_weights).mean() > 5  # not an untrained model

    # the bundled models' TFLite files came along: --runtime litert-int8 runs with TensorFlow and Keras
    # unimportable, converting nothing (an empty cache stays empty), and gives the checkout's output
    from drn_tf.inference import export_cache as X

    shipped = {f"drn_tf/assets/{X.BUNDLED_EXPORTS}/{item['file']}" for entry in X.bundled_manifest().values()
               for item in entry["files"].values()}
    assert shipped and shipped | {f"drn_tf/assets/{X.BUNDLED_EXPORTS}/{X.BUNDLED_MANIFEST}"} <= names
    blocked = ("import sys\nsys.modules['tensorflow'] = sys.modules['keras'] = None\n"
               "from drn_tf.cli.main import main\nsys.exit(main())\n")
    r = subprocess.run([str(py), "-c", blocked, "upscale", "photo.png", "--runtime", "litert-int8", "-o", "int8.png"],
                       cwd=work, env=dict(env, DRN_CACHE_DIR=str(tmp_path / "cache")), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "cache").exists()
    np.testing.assert_array_equal(np.asarray(Image.open(work / "int8.png")),
                                  drn_tf.upscale(image, scale=2, runtime="litert-int8"))
