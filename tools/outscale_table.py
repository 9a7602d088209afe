"""The any-size table of docs/usage.md: ``drn upscale --outscale F`` against plain bicubic, by the protocol.

For each factor F and set: HR modcropped so that HR / F is whole (F = p/q: sides multiples of p);
LR = MATLAB bicubic downscale of HR by F; SR = the bundled models chained as ``drn upscale
--outscale F`` chains them (:func:`drn_tf.inference.outsize.model_chain`), then MATLAB bicubic to the
HR size; bicubic = MATLAB bicubic of the LR to the HR size. PSNR on Y, ceil(F) border pixels dropped.

    python tools/outscale_table.py --data ../shared/data/benchmark/Set5 ../shared/data/benchmark/Set14
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from fractions import Fraction
from pathlib import Path

import numpy as np


def pairs(folder: Path, factor: float):
    """(LR, HR) uint8 pairs of a folder for ``factor``."""
    from drn_tf.core.imageio import list_images, read_image
    from drn_tf.core.imresize import imresize

    p = Fraction(factor).limit_denominator(16).numerator
    for f in list_images(folder):
        hr = read_image(f, mode="rgb")
        hr = hr[: hr.shape[0] - hr.shape[0] % p, : hr.shape[1] - hr.shape[1] % p]
        shape = (round(hr.shape[0] / factor), round(hr.shape[1] / factor))
        yield imresize(hr, 1.0 / factor, output_shape=shape), hr


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True, help="benchmark folders (Set5, Set14)")
    ap.add_argument("--factors", nargs="+", type=float, default=[1.5, 6.0, 8.0])
    ap.add_argument("--preset", default="drn", help="preset family: drn or drn_s (default drn)")
    ap.add_argument("--runtime", default="keras")
    args = ap.parse_args(argv)

    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    from drn_tf.core.imresize import imresize
    from drn_tf.core.metrics import psnr_y
    from drn_tf.inference.outsize import SizeRequest, model_chain
    from drn_tf.inference.picture import Upscaler, upscale_image
    from drn_tf.inference.runtimes import load_runtime

    loaded = {}

    def runtime_for(s):
        if s not in loaded:
            loaded[s] = load_runtime(None, f"{args.preset}_x{s}", s, args.runtime)
        return loaded[s]

    t0 = time.time()
    print("| factor | chain | set | images | bicubic PSNR (dB) | SR PSNR (dB) | gain (dB) |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for factor in args.factors:
        up = Upscaler(runtime_for=runtime_for, scale=2, request=SizeRequest(outscale=factor))
        chain = " then ".join(f"x{s}" for s in model_chain(factor))
        for folder in map(Path, args.data):
            bic, sr = [], []
            for lr, hr in pairs(folder, factor):
                border = math.ceil(factor)
                bic.append(psnr_y(imresize(lr, factor, output_shape=hr.shape[:2]), hr, border))
                out = upscale_image(lr, up)
                assert out.shape == hr.shape, (out.shape, hr.shape)
                sr.append(psnr_y(out, hr, border))
            b, s = float(np.mean(bic)), float(np.mean(sr))
            print(f"| x{factor:g} | {args.preset}: {chain} | {folder.name} | {len(sr)} | {b:.2f} | {s:.2f} | "
                  f"{s - b:+.2f} |", flush=True)
    print(f"\n{platform.machine()}, {args.runtime} runtime, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
