"""What ``drn upscale``'s arguments ask for, checked before any image is touched: the output target, the values,
the scale, and the :class:`Options` the per-file loop reads. ``error`` arguments: the exception raised for a
value that cannot be used (``drn beam`` shares some of these checks)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from drn_tf.inference.files import _GLOB_CHARS, folder_problem


@dataclass
class Options:
    """What the per-file loop (:func:`drn_tf.cli.commands.upscale.loop.upscale_files`) reads for every input."""

    scale: int
    out: Path | None = None
    out_is_file: bool = False
    fmt: str | None = None
    tile: object = "auto"  # "auto", None or int
    tile_overlap: int | None = None
    self_ensemble: bool = False
    overwrite: bool = False
    skip_existing: bool = False
    quality: int | None = None  # JPEG/WebP; None: drn_tf.core.imageio.DEFAULT_QUALITY
    keep_metadata: bool = True  # ICC profile, EXIF, DPI
    quiet: bool = False
    request: object = None  # a drn_tf.inference.outsize.SizeRequest: any output size
    runtime_for: object = None  # scale -> runtime, for chains of models (default: the one model)
    video: object = None  # drn_tf.inference.video.VideoOptions
    model_id: str = ""  # the models' names (a video job resumes only with the same)
    scales: tuple = ()  # the scales runtime_for has

    @property
    def label(self):
        """The output name's tag: the scale, or the size request's label."""
        return self.request.label() if self.request is not None else self.scale


def output_target(args, error) -> tuple[Path | None, bool]:
    """``(out, out_is_file)``: where ``-o`` sends the outputs (None: next to each input), and whether it names
    one file (one input file and an image or video extension), checked against the inputs and ``--format``."""
    from drn_tf.core.imageio import FORMAT_EXTENSIONS, FORMATS, format_for
    from drn_tf.inference.video import VIDEO_EXTENSIONS

    out = Path(args.output) if args.output else None
    first = args.inputs[0]
    # one input naming a file (even a missing one: reported as "no such file", not as an -o problem)
    single = len(args.inputs) == 1 and not Path(first).is_dir() and (Path(first).exists() or not _GLOB_CHARS & set(first))
    named = set(FORMATS) | set(VIDEO_EXTENSIONS)  # -o with one of these extensions names a file
    out_is_file = bool(out is not None and single and not out.is_dir() and out.suffix.lower() in named
                       and not args.output.endswith(("/", os.sep)))
    if out is not None and not out_is_file and not out.is_dir() and out.suffix.lower() in named:
        raise error(f"-o {out} names a file, but the inputs are not one image file; give a folder for -o")
    if out_is_file and args.format and out.suffix.lower() in FORMATS and format_for(out) != format_for("x" + FORMAT_EXTENSIONS[args.format]):
        raise error(f"-o {out} has a {out.suffix} extension but --format is {args.format}")
    return out, out_is_file


def prepare_output(out: Path | None, out_is_file: bool, has_jobs: bool, error) -> None:
    """Create the ``-o`` folder (only when there is something to write into it: a glob matching nothing makes no
    folder) and check that it can be written, or that a ``-o`` file's parent is a folder."""
    if out is not None and not out_is_file and has_jobs:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise error(f"cannot create output folder {out}: {folder_problem(out, exc)}; give a folder for -o") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise error(f"output folder {out} is not writable")
    elif out is not None:
        parent = out.parent
        if parent.exists() and not parent.is_dir():
            raise error(f"cannot write {out}: {parent} is not a folder")


def check_quality_and_tile(args, error) -> None:
    """The ``--quality`` and ``--tile`` values ``drn upscale`` and ``drn beam`` share; ``error`` is raised."""
    if args.tile is not None and args.tile < 0:
        raise error(f"--tile must be >= 0 (0: no tiling), got {args.tile}")
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise error(f"--quality must be between 1 and 100, got {args.quality}")


def check_tile_overlap(args, error) -> None:
    if args.tile_overlap is not None and args.tile_overlap < 0:
        raise error(f"--tile-overlap must be >= 0, got {args.tile_overlap}")


def tile_setting(args):
    """``--tile`` as :class:`Options` holds it: ``"auto"`` (not given), None (0: never tile) or the side."""
    return "auto" if args.tile is None else (None if args.tile == 0 else args.tile)


def size_request(args, error):
    """The :class:`~drn_tf.inference.outsize.SizeRequest` of the arguments, or None; ``error`` is raised."""
    from drn_tf.inference.outsize import SizeRequest

    values = {k: getattr(args, k, None) for k in ("outscale", "width", "height", "max_side")}
    if all(v is None for v in values.values()):
        return None
    if args.scale is not None:
        raise error("--scale picks one model; with --outscale/--width/--height/--max-side leave it out")
    try:
        return SizeRequest(**values)
    except ValueError as exc:
        raise error(str(exc).replace("output scale", "--outscale")) from None


def video_options(args, error):
    """The :class:`~drn_tf.inference.video.VideoOptions` of the arguments; ``error`` is raised."""
    from drn_tf.inference.video import VideoOptions

    if args.crf is not None and not 0 <= args.crf <= 63:
        raise error(f"--crf must be between 0 and 63, got {args.crf}")
    if args.crf is not None and args.lossless:
        raise error("--crf and --lossless exclude each other")
    return VideoOptions(codec=args.video_codec, crf=args.crf, lossless=args.lossless)


def scale_without_loading(args) -> int | None:
    """The run's scale from the arguments alone (--scale, the preset, the
    ``.keras`` file's config.json); None if only loading the model can tell."""
    if args.scale is not None:
        return args.scale
    if args.model:
        import json
        import zipfile

        try:
            with zipfile.ZipFile(args.model) as z:
                return int(json.loads(z.read("config.json"))["config"]["scale"])
        except Exception:  # noqa: BLE001 - loading the model reports what is wrong
            return None
    from drn_tf.models.presets import get_preset

    try:
        return int(get_preset(args.preset)["config"]["scale"]) if args.preset else 2
    except ValueError:
        return None  # an unknown preset: resolve_model says which exist


def tile_overlap(args, runtime, tile, error) -> int:
    """The tile overlap: --tile-overlap, else the model's receptive radius (else
    :data:`drn_tf.core.tiling.FALLBACK_OVERLAP`); checked against --tile by the tiling rule."""
    from drn_tf.core.tiling import DEFAULT_TILE, FALLBACK_OVERLAP, check_tile

    radius = runtime.receptive_radius
    overlap = args.tile_overlap if args.tile_overlap is not None else radius
    if radius is not None and overlap < radius:
        raise error(
            f"--tile-overlap {overlap} is below the model's receptive radius ({radius}); tiles would show seams"
        )
    if overlap is None:
        overlap = FALLBACK_OVERLAP
    tile_side = DEFAULT_TILE if tile == "auto" else tile
    if tile_side is not None:
        try:
            check_tile(tile_side, overlap)
        except ValueError as exc:
            raise error(str(exc)) from None
    return overlap
