"""Prepare the offline bundle ``.gpu/`` (an ignored folder) that ``training/gpu_session.sh`` needs on a
GPU host with JAX and no TensorFlow, no internet access and Python 3.12: copy the checkout with ``.gpu/``
to the host and run the script there.

    python training/prepare_gpu_bundle.py [--data ../shared/data] [--out .gpu] [--max-mib N]

Makes:
  .gpu/whl/         keras, namex and optree wheels for CPython 3.12 (pip download; the GPU host is
                    expected to have numpy, h5py, pillow and pyyaml, which keeps the bundle small:
                    a pillow wheel would add 7 MB, PyYAML's 0.7 MiB)
  .gpu/data/train/  T91 + BSD200 as lossless WebP (about 42 MB instead of 62 MB of PNG;
                    every file is checked to decode to the same pixels)
  .gpu/data/val/    Set5 as lossless WebP (the validation set of `gpu_session.sh`; --val-sets Set5 Set14
                    adds Set14, 3.4 MB)
  .gpu/code/        a snapshot of drn_tf/ and training/ from git HEAD, so the run uses
                    committed code even while the working tree is being edited

Then it prints the size of what is copied to the host: the checkout's files (tracked, and untracked ones
git does not ignore) plus ``.gpu/``. ``--max-mib N`` makes it fail (exit status 1) when that is over N MiB,
for hosts that limit the size of what is copied to them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ["keras==3.15.1", "namex==0.1.0", "optree==0.20.0"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def download_wheels(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)  # a wheel of an older list would be copied (and installed) too
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run(cmd + WHEELS, check=True)


def convert_images(src: Path, dest: Path) -> int:
    """Every image of ``src`` as lossless WebP in ``dest`` (checked to decode to the same pixels); grey images
    are copied as they are (WebP has no grey mode, and the protocol evaluates grey images on their one channel)."""
    import numpy as np
    from PIL import Image

    total = 0
    dest.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if not f.is_file():
            continue
        out = dest / (f.stem + ".webp")
        with Image.open(f) as im:
            if im.mode in ("L", "1", "I;16", "I"):
                shutil.copy2(f, dest / f.name)
                total += f.stat().st_size
                continue
            rgb = im.convert("RGB")
        if not out.exists():
            rgb.save(out, lossless=True, quality=100, method=2)
        with Image.open(out) as back:
            if not np.array_equal(np.asarray(back.convert("RGB")), np.asarray(rgb)):
                raise SystemExit(f"{out}: WebP does not decode to the same pixels as {f}")
        total += out.stat().st_size
    return total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--out", default=str(ROOT / ".gpu"))
    p.add_argument("--skip-wheels", action="store_true")
    p.add_argument("--val-sets", nargs="+", default=["Set5"], help="benchmark sets to validate on (default: Set5)")
    p.add_argument("--max-mib", type=float, default=None,
                   help="fail when the checkout's files plus the bundle are over this many MiB (default: no limit)")
    args = p.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    if not args.skip_wheels:
        download_wheels(out / "whl")
    size = 0
    for name in ("T91", "BSD200"):
        size += convert_images(data / "train" / name, out / "data" / "train" / name)
    for name in args.val_sets:
        val = out / "data" / "val" / name
        if val.exists():
            shutil.rmtree(val)
        size += convert_images(data / "benchmark" / name, val)
    code = out / "code"
    if code.exists():
        shutil.rmtree(code)
    code.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD", "drn_tf", "training"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "x", "-C", str(code)], input=archive, check=True)
    print(f"{out}: training and validation images {size / 1e6:.1f} MB as WebP; code snapshot of HEAD in {code}")
    return check_size(out, None if args.max_mib is None else int(args.max_mib * 2**20))


def tree_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def check_size(gpu_dir: Path, limit: int | None = None) -> int:
    """Print the size of what is copied to the GPU host: the checkout's tracked files, untracked ones git does
    not ignore, and the bundle ``gpu_dir``; 1 when that is over ``limit`` bytes (None: no limit)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout
    tracked = sum((ROOT / f).stat().st_size for f in files.decode().split("\0") if f and (ROOT / f).is_file())
    bundle = tree_bytes(gpu_dir)
    total = tracked + bundle
    print(f"to copy to the GPU host: {tracked / 2**20:.1f} MiB of the checkout + {bundle / 2**20:.1f} MiB "
          f"{gpu_dir.name}/ = {total / 2**20:.1f} MiB" + ("" if limit is None else f" of {limit / 2**20:.0f} MiB"))
    if limit is not None and total > limit:
        print(f"over the limit by {(total - limit) / 2**20:.1f} MiB: remove files from {gpu_dir}/whl "
              "(e.g. a wheel the GPU image already has) or untrack large assets", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
