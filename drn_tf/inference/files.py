"""Which files ``drn upscale`` reads and writes, decided before any model is loaded.

:func:`expand_inputs` turns files, folders (searched recursively for images)
and globs into a :class:`Plan` of jobs, deduplicated and in order, with an error
per input that matches nothing; in folders, earlier outputs (``NAME_x2.png``
next to ``NAME.*``) are skipped; :func:`output_path` names each output (``NAME_x{s}.EXT``,
next to the input or under ``--out`` keeping sub-folders);
:func:`check_output_size` refuses images too small or whose output would pass
:data:`MAX_OUTPUT_PIXELS`; :func:`output_problem` and :func:`folder_problem` say why an output
cannot be written (a file where a folder is needed, a read-only folder or file) before any model
loads (``drn upscale``, ``drn beam``, ``drn evaluate``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

# The whole output image is held in memory (uint8); refuse bigger outputs.
MAX_OUTPUT_PIXELS = 500_000_000
_GLOB_CHARS = set("*?[")


# ---------------------------------------------------------------- inputs and outputs


@dataclass
class Job:
    src: Path
    rel: Path  # path relative to the output folder (folder inputs keep their sub-folders)


@dataclass
class Plan:
    jobs: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def _looks_like_output(f: Path, scale: int | None) -> bool:
    """NAME_x2.png next to NAME.* : an output of an earlier run."""
    scales = (scale,) if scale else (2, 3, 4)
    for s in scales:
        suffix = f"_x{s}"
        if f.stem.endswith(suffix):
            base = f.stem[: -len(suffix)]
            if base and any(f.parent.glob(glob.escape(base) + ".*")):
                return True
    return False


def _wanted(rel: Path, is_image_name, is_video) -> bool:
    """An image (:func:`drn_tf.core.imageio.is_image_name`) or a video not in a hidden folder."""
    return is_image_name(rel) or (is_video(rel) and not any(part.startswith(".") for part in rel.parts))


def expand_inputs(inputs, scale: int | None = None) -> Plan:
    """Files, folders and globs -> jobs (deduplicated, in order) and per-input errors."""
    from drn_tf.core.imageio import IMAGE_EXTENSIONS, is_image_name
    from drn_tf.inference.video import is_video

    plan = Plan()
    seen = set()

    def add(f: Path, rel: Path):
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            plan.jobs.append(Job(f, rel))

    def add_dir(d: Path):
        try:
            files = sorted(f for f in d.rglob("*") if _wanted(f.relative_to(d), is_image_name, is_video) and f.is_file())
        except OSError as exc:
            plan.errors.append(f"{d}: cannot list folder: {exc.strerror or exc}")
            return
        kept = [f for f in files if not _looks_like_output(f, scale)]
        plan.skipped.extend(f for f in files if f not in kept)
        if not kept:
            plan.errors.append(f"{d}: folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        for f in kept:
            add(f, f.relative_to(d))

    for text in inputs:
        p = Path(text)
        if p.is_dir():
            add_dir(p)
        elif p.exists():
            add(p, Path(p.name))
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                plan.errors.append(f"{text}: no files match this pattern")
            for m in matches:
                m = Path(m)
                if m.is_dir():
                    add_dir(m)
                else:
                    add(m, Path(m.name))
        else:
            plan.errors.append(f"{text}: no such file or directory")
    return plan


def output_path(job: Job, *, scale: int, out: Path | None, out_is_file: bool, fmt: str | None) -> Path:
    from drn_tf.core.imageio import FORMAT_EXTENSIONS, FORMATS
    from drn_tf.inference.video import VIDEO_EXTENSIONS

    if out is not None and out_is_file:
        return out
    ext = job.src.suffix.lower()
    if fmt and ext not in VIDEO_EXTENSIONS:
        ext = FORMAT_EXTENSIONS[fmt]
    elif ext not in FORMATS and ext not in VIDEO_EXTENSIONS:
        ext = ".png"
    tag = scale if isinstance(scale, str) else f"x{scale}"  # a size request's label: x1.5, w1000, ...
    name = f"{job.src.stem}_{tag}{ext}"
    if out is None:
        return job.src.parent / name
    return out / job.rel.parent / name


def same_file(a, b) -> bool:
    """Whether the paths ``a`` and ``b`` name one file: the same real path (links followed), or two hard links of
    one file. The check that keeps an output from replacing an input."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def check_output_size(w: int, h: int, s: int) -> None:
    """ValueError for an image too small to upscale or whose x``s`` output would pass :data:`MAX_OUTPUT_PIXELS`."""
    if h < 2 or w < 2:
        raise ValueError(f"image of {w}x{h} pixels is too small to upscale (at least 2x2)")
    if h * w * s * s > MAX_OUTPUT_PIXELS:
        raise ValueError(f"{w}x{h} x{s} would give {w * s}x{h * s} = {h * w * s * s:,} pixels, "
                         f"over the limit of {MAX_OUTPUT_PIXELS:,}; downscale it or split it first")


# ---------------------------------------------------------------- can it be written?


def _writable(path) -> bool:
    return os.access(path, os.W_OK | (os.X_OK if os.path.isdir(path) else 0))


def folder_problem(folder, exc: OSError | None = None) -> str | None:
    """Why ``folder`` cannot be made or take new files, in words (a file in the way is named), or None.
    ``exc``: the error a ``mkdir`` gave, said when nothing better is found."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                return f"{p} is a file, not a folder"
            if not _writable(p):
                return f"folder {p} is not writable"
            break
    if exc is not None:
        return exc.strerror or str(exc)
    return None


def output_problem(dst, *, overwrite: bool = False) -> str | None:
    """Why the output file ``dst`` cannot be written, found without writing anything, or None: a file
    where a folder is needed, a folder that is not writable (the one that holds ``dst``, or the nearest
    that exists), or (with ``overwrite``) an existing output that is read-only or not a file."""
    dst = Path(dst)
    if dst.is_dir():
        return f"output {dst} is a folder"
    problem = folder_problem(dst.parent)
    if problem:
        return f"cannot write {dst}: {problem}"
    if overwrite and dst.exists() and not _writable(dst):
        return f"output {dst} is read-only (make it writable to replace it)"
    return None
