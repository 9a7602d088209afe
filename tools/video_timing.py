"""Frames/s of `drn upscale` on a short video, per runtime, interleaved.

Usage: python tools/video_timing.py [--photo PATH] [--seconds 2.5] [--fps 12] [--size 320x240] [--rounds 2]
       [--runtimes keras litert litert-int8 onnxruntime openvino] [--preset drn_s_x2]

Makes a clip once (PyAV: a slow pan and zoom over a real photo, by default Set14's baboon from
../shared/data/benchmark/Set14, 12 frames/s, libx264 crf 18, with a 440 Hz AAC audio track), then runs
`python -m drn_tf.cli upscale CLIP -o OUT --runtime R` for each runtime in turn, ROUNDS times
(runtimes interleaved). Frames/s is the frames over the seconds `drn upscale` prints for the video
(decoding, upscaling, encoding; start-up and model loading not included); the wall time of the whole
command and its CPU time (user + sys, start-up included) are printed too: on a machine shared with
other jobs the CPU time is the steadier figure. Runtimes whose packages are missing are left out and said so. The machine,
CPU flags and load average are printed with the table; the figures in docs/usage.md "Videos" came from it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "benchmark" / "Set14" / "baboon.png"
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def make_clip(photo: Path, path: Path, seconds: float, width: int, height: int, fps: int = 24) -> int:
    """A pan-and-zoom clip over ``photo`` with a sine audio track; returns its frame count."""
    import av

    src = Image.open(photo).convert("RGB")
    sw, sh = src.size
    frames = int(round(seconds * fps))
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for i in range(frames):
            t = i / max(frames - 1, 1)
            zoom = 1.0 + 0.35 * t  # the crop shrinks: a slow zoom in
            cw, ch = min(sw, sh * width / height) / zoom, min(sh, sw * height / width) / zoom
            x0, y0 = (sw - cw) * (0.15 + 0.7 * t), (sh - ch) * (0.5 - 0.3 * t)  # and a pan
            crop = src.resize((width, height), Image.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
            for packet in video.encode(av.VideoFrame.from_ndarray(np.asarray(crop), format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = int(seconds * 44100)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    return frames


def available(runtime: str) -> bool:
    module = {"litert": "ai_edge_litert", "litert-int8": "ai_edge_litert", "onnxruntime": "onnxruntime",
              "openvino": "openvino"}.get(runtime)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def cpu_text() -> str:
    name, flags = platform.processor() or "cpu", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = re.search(r"model name\s*:\s*(.*)", text).group(1)
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores, {name}, flags: {' '.join(f for f in FLAGS if f in flags)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--seconds", type=float, default=2.5)
    ap.add_argument("--size", default="320x240", help="WxH of the clip")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--preset", default="drn_s_x2")
    ap.add_argument("--runtimes", nargs="+", default=["keras", "litert", "litert-int8", "onnxruntime", "openvino"])
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="drn-video-timing-"))
    clip = work / "clip.mp4"
    frames = make_clip(args.photo, clip, args.seconds, width, height, args.fps)
    runtimes = [r for r in args.runtimes if available(r)]
    missing = sorted(set(args.runtimes) - set(runtimes))
    print(f"clip: {frames} frames, {width}x{height}, {args.seconds} s with audio, over {args.photo.name}")
    if missing:
        print("left out (not installed):", ", ".join(missing))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for runtime in runtimes:  # once before timing: builds and caches each runtime's converted model
        warm = work / f"warm-{runtime}.png"
        Image.open(args.photo).convert("RGB").resize((64, 48)).save(warm)
        subprocess.run([sys.executable, "-m", "drn_tf.cli", "upscale", str(warm), "--preset", args.preset,
                        "--runtime", runtime, "-q", "--overwrite"], env=env, capture_output=True, check=True)
    seen: dict = {}
    for _ in range(args.rounds):
        for runtime in runtimes:
            out = work / f"out-{runtime}.mp4"
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "drn_tf.cli", "upscale", str(clip), "-o", str(out), "--preset",
                                args.preset, "--runtime", runtime, "--overwrite"], env=env, capture_output=True,
                               text=True)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            m = re.search(r"(\d+) frames(?:, \d+ already done)?, ([\d.]+) s\)", p.stdout)
            if p.returncode != 0 or not m:
                print(f"{runtime}: failed (rc {p.returncode}): {(p.stderr or p.stdout).strip()[-300:]}")
                break
            seen.setdefault(runtime, []).append((int(m.group(1)) / float(m.group(2)), wall, cpu))
    print(f"\ndrn upscale clip.mp4 --preset {args.preset} --runtime R ({width}x{height} -> x2, {frames} frames), "
          f"{args.fps} frames/s, median of {args.rounds}")
    print("| runtime | frames/s | seconds per frame | wall time of the command | CPU time of the command |")
    print("|---|---|---|---|---|")
    for runtime, v in seen.items():
        fps = statistics.median(x[0] for x in v)
        wall = statistics.median(x[1] for x in v)
        cpu = statistics.median(x[2] for x in v)
        print(f"| {runtime} | {fps:.2f} | {1 / fps:.2f} | {wall:.1f} s | {cpu:.1f} s |")
    print(f"\nmachine: {cpu_text()}; load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
