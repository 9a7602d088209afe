"""``drn upscale``: super-resolve image files, folders or globs.

Every input is handled on its own: a bad input prints one line
``drn upscale: error: FILE: reason`` and the others are still processed; the
exit status is 1 if any input failed or an output existed already (said once,
with --skip-existing and --overwrite suggested; 2 for errors in the arguments
or the model, before any image is touched). Outputs are written atomically
(temporary file in the target folder + rename), never over an input, and
never over an existing file without ``--overwrite`` (``--skip-existing``
leaves finished outputs alone, to resume a folder job). ICC profile, EXIF
(orientation reset: the pixels are turned upright) and DPI go from each
input to its output where the format can store them.

Start-up order: arguments, inputs and every output path are checked first,
and the model is loaded only if some image is left to do (``NEEDS_BACKEND =
False``), so a mistake costs a fraction of a second. TensorFlow and Keras are
imported only for a Keras runtime or a first conversion: ``--runtime litert`` /
``litert-int8`` on a bundled preset opens its shipped TFLite file, other
non-Keras runtimes a file cached by the ``.keras`` file's bytes.
SIGTERM removes the temporary file being written and exits 143; a closed
stdout (``drn upscale ... | head``) stops the run quietly (exit 141).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from drn_tf.inference.files import (
    _GLOB_CHARS,
    Job,
    expand_inputs,
    folder_problem,
    output_path,
    output_problem,
    same_file,
)
from drn_tf.inference.runtimes import AUTO, runtime_names, runtimes_help
from drn_tf.inference.video import is_video, video_output_path

# The backend is started by run() itself, after the checks (see drn_tf.cli.main).
NEEDS_BACKEND = False


def _presets_epilog() -> str:
    from drn_tf.core.utils import assets_dir
    from drn_tf.models.presets import PRESETS

    folder = assets_dir()
    lines = [f"  {name:9s} {PRESETS[name]['description']}"
             + ("" if (folder / PRESETS[name]["asset"]).is_file() else " (no bundled weights)")
             for name in sorted(PRESETS)]
    return "presets (--preset NAME; default drn_x{scale}):\n" + "\n".join(lines)


def add_parser(sub, help_text):
    import argparse
    import textwrap

    p = sub.add_parser(
        "upscale",
        help=help_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the preset table's lines
        description=textwrap.fill(
            "Super-resolve images with a DRN model. INPUT may be files, folders (searched "
            "recursively) or globs. Outputs go next to each input as NAME_x{s}.EXT unless -o is given "
            "(a file for a single input file, else a folder). Large images are processed in tiles "
            "(exactly the same result as whole-image inference, bounded memory). ICC profile, EXIF and "
            "DPI are kept where the output format can store them. Animated GIF / APNG / WebP and multi-page "
            "TIFF: every frame, with durations, loop count and disposal where the output format stores "
            "them; GIF output is palette-quantised (256 colours). 16-bit PNG/TIFF in: 16-bit out. Any "
            "output size: --outscale, --width/--height or --max-side run the models (chained above x4) "
            "and then resample to the exact size with MATLAB bicubic.", 79),
        epilog=_presets_epilog(),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or globs")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (one input) or folder")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default: the model's, else 2)")
    add_size_options(p)
    add_video_options(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="FILE", help="a trained .keras model file")
    src.add_argument("--preset", metavar="NAME", help="a preset with a bundled trained model (default drn_x{scale})")
    p.add_argument(
        "--kind", choices=("auto", "clean", "photo"), default="auto",
        help="which bundled model suits the inputs: photo (fine-tuned for JPEG-compressed inputs: removes "
        "compression artefacts instead of sharpening them), clean (for uncompressed images), auto (default: "
        "photo for JPEG files up to quality 90, their quality read from the file, clean for the rest; a PNG "
        "that was once a JPEG needs --kind photo). Presets only: --model FILE is used as it is")
    p.add_argument(
        "--tile",
        type=int,
        metavar="N",
        help="LR tile side in pixels, context included (default: tile images over 512x512 "
        "pixels, with tiles of at most 256 pixels; 0: never tile)",
    )
    p.add_argument(
        "--tile-overlap",
        type=int,
        metavar="N",
        help="context pixels on each side of a tile (default and minimum: the model's receptive radius)",
    )
    p.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower, +PSNR)")
    p.add_argument(
        "--runtime",
        choices=runtime_names(),
        default=AUTO,
        help=f"what runs the network: {runtimes_help()}. TFLite models are built on first use and cached. "
        "Default auto: the fastest float runtime on this machine, measured on the first run and cached "
        "(DRN_AUTO_RUNTIME=remeasure measures again, =rule uses the CPU flags); keras where a GPU is visible",
    )
    add_precision_device_options(p)
    p.add_argument("--format", choices=("png", "jpg", "webp"), help="output format (default: the input's)")
    p.add_argument("--quality", type=int, metavar="Q",
                   help="JPEG/WebP quality, 1-100 (default: 95); ignored for lossless formats")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    existing.add_argument("--skip-existing", action="store_true",
                          help="leave inputs whose output exists alone (resume a folder job); counted in the summary")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only warnings and errors: no per-image lines, no progress bar, no summary "
                   "unless something failed")
    p.set_defaults(func=run)


def add_precision_device_options(p) -> None:
    """--precision and --device (what computes the network: :mod:`drn_tf.inference.bf16`, :mod:`.devices`)."""
    p.add_argument(
        "--precision", choices=("float32", "bf16"), default="float32",
        help="float32 (default), or bf16 on CPUs with AVX512_BF16 or AMX (refused elsewhere): faster, a slightly "
        "different output; with --runtime auto the faster bf16 engine here (keras-bf16 or openvino-bf16, "
        "measured once), with keras or openvino their bf16 form")
    p.add_argument(
        "--device", metavar="cpu|gpu[:N]",
        help="where the Keras model runs (--runtime keras or auto): cpu, gpu (the first GPU) or gpu:N; an "
        "absent device is refused with the visible ones listed (default: TensorFlow's choice; auto picks keras "
        "when a GPU is visible)")


def add_size_options(p) -> None:
    """The output-size options (any size: the models, chained, then MATLAB bicubic to the exact size)."""
    import textwrap

    g = p.add_argument_group(
        "output size (instead of --scale; output named NAME_x1.5, NAME_w1000, NAME_h800, NAME_1000x800 or "
        "NAME_max2048)",
        textwrap.fill("The models whose scales multiply to the smallest factor at least the one needed run in a row "
        "(x6: x2 then x3; x8: x2 then x4), then MATLAB bicubic (antialiased when shrinking) gives the exact "
        "size. With --model, that model alone is chained; with --preset, its family (drn_s_x2: drn_s_x*).", 79))
    g.add_argument("--outscale", type=float, metavar="F", help="any factor, e.g. 1.5, 2.5, 6, 8")
    g.add_argument("--width", type=int, metavar="W",
                   help="output width; the height follows the aspect ratio unless --height is given too "
                   "(both: exactly W x H, the aspect ratio is not kept)")
    g.add_argument("--height", type=int, metavar="H", help="output height; the width follows the aspect ratio")
    g.add_argument("--max-side", type=int, metavar="N", help="the longer side becomes N pixels (aspect ratio kept)")


def add_video_options(p) -> None:
    import textwrap

    from drn_tf.inference.video import CODECS, DEFAULT_CODEC, SEGMENT_FRAMES, VIDEO_EXTENSIONS

    g = p.add_argument_group(
        f"videos ({', '.join(VIDEO_EXTENSIONS)}; needs pip install 'drn-tf[video]')",
        textwrap.fill("Every frame is upscaled as an image is (same runtimes, tiling and sizes); frame rate, time base and "
        "rotation are kept, audio and subtitle streams copied unchanged. Work is kept in segments of "
        f"{SEGMENT_FRAMES} frames in a hidden folder beside the output: a stopped job run again resumes.", 79))
    g.add_argument("--video-codec", choices=tuple(CODECS), default=DEFAULT_CODEC,
                   help="video encoder (default %(default)s; ffv1 is lossless and writes .mkv)")
    g.add_argument("--crf", type=int, metavar="N",
                   help="constant quality, lower is better (default: libx264 18, libx265 22, vp9 32)")
    g.add_argument("--lossless", action="store_true",
                   help="lossless video (libx264: libx264rgb -qp 0; libx265, vp9: lossless RGB; ffv1 always)")


def video_options(args, error):
    from drn_tf.inference.video import VideoOptions

    if args.crf is not None and not 0 <= args.crf <= 63:
        raise error(f"--crf must be between 0 and 63, got {args.crf}")
    if args.crf is not None and args.lossless:
        raise error("--crf and --lossless exclude each other")
    return VideoOptions(codec=args.video_codec, crf=args.crf, lossless=args.lossless)


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


# ---------------------------------------------------------------- progress


class Progress:
    """One status line on a terminal (images and tiles); per-image lines otherwise."""

    def __init__(self, total: int, quiet: bool = False, stream=None):
        self.total = total
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet
        self.index = 0
        self.name = ""
        self._width = 0

    def _draw(self, text: str):
        if not self.tty:
            return
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def start(self, index: int, name: str):
        self.index, self.name = index, name
        self._draw(self._line())

    def _line(self, tiles: str = "") -> str:
        n = 24
        filled = int(n * (self.index - 1) / max(self.total, 1))
        bar = "#" * filled + "." * (n - filled)
        name = self.name if len(self.name) <= 40 else "..." + self.name[-37:]
        return f"[{bar}] {self.index}/{self.total} {name}{tiles}"

    def tile(self, done: int, total: int):
        if total > 1:
            m = 16
            filled = int(m * done / total)
            self._draw(self._line(f"  tiles [{'#' * filled}{'.' * (m - filled)}] {done}/{total}"))

    def frames(self, done: int, total, fps: float):
        """A video's frames: done, in all, frames/s and the time left."""
        from drn_tf.inference.video import eta_text

        self._draw(self._line("  " + eta_text(done, total, fps)))

    def clear(self):
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def message(self, text: str, stream=None):
        self.clear()
        print(text, file=stream or sys.stdout, flush=True)


# ---------------------------------------------------------------- the work


@dataclass
class Options:
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


def _error(progress: Progress, text: str):
    progress.message(f"drn upscale: error: {text}", sys.stderr)


class _Fail(Exception):
    pass


class _Skip(Exception):
    """The output exists and --skip-existing was given."""


class _Exists(_Fail):
    """The output exists and neither --overwrite nor --skip-existing was given."""


class _Unwritable(_Fail):
    """The output cannot be written there (args: the message, the reason shared by a folder's outputs)."""


def check_output(job: Job, opts: Options, inputs: set, claimed: set) -> Path:
    """The output path of ``job``, or :class:`_Fail` / :class:`_Skip`: the
    checks that need no pixels (run for every input before the model loads,
    and again right before each write). ``inputs``: real paths of this run's
    inputs; ``claimed``: real paths already written (or planned) in this run."""
    dst = output_path(job, scale=opts.label, out=opts.out, out_is_file=opts.out_is_file, fmt=opts.fmt)
    if opts.video is not None and is_video(job.src):
        dst = video_output_path(dst, opts.video)
    real = os.path.realpath(dst)
    if same_file(dst, job.src):
        raise _Fail(f"{job.src}: output path {dst} is the input file itself; choose another -o")
    if real in inputs:
        raise _Fail(f"{job.src}: output {dst} is another input of this run; refusing to overwrite it")
    if real in claimed:
        raise _Fail(f"{job.src}: output {dst} is also the output of another input of this run")
    if dst.exists() and not opts.overwrite:
        if opts.skip_existing:
            raise _Skip(str(dst))
        raise _Exists(f"{job.src}: output {dst} exists (pass --overwrite to replace it, or --skip-existing)", dst)
    problem = output_problem(dst, overwrite=opts.overwrite)
    if problem:
        raise _Unwritable(f"{job.src}: {problem}", folder_problem(dst.parent) or problem)
    return dst


def precheck(jobs, opts: Options, progress: Progress) -> tuple[list, int, int, int]:
    """Check every job's output before anything is computed: ``(jobs left,
    failed, skipped, existing)``; failures are reported as they are found, outputs that
    exist (``existing``, not failures) and outputs a folder cannot take once for all."""
    inputs = {os.path.realpath(j.src) for j in jobs}
    claimed: set = set()
    left, failed, skipped, exist, unwritable = [], 0, 0, [], {}
    for job in jobs:
        try:
            dst = check_output(job, opts, inputs, claimed)
        except _Skip:
            skipped += 1
            continue
        except _Exists as exc:
            exist.append(exc)
            continue
        except _Unwritable as exc:
            unwritable.setdefault(exc.args[1], []).append(exc.args[0])
            failed += 1
            continue
        except _Fail as exc:
            _error(progress, str(exc))
            failed += 1
            continue
        claimed.add(os.path.realpath(dst))
        left.append(job)
    if len(exist) == 1:
        _error(progress, exist[0].args[0])
    elif exist:  # a folder job run again: said once, not once per file
        _error(progress, f"{len(exist)} outputs exist already (the first: {exist[0].args[1]}); pass "
               "--skip-existing to leave them and do the rest, or --overwrite to replace them")
    for reason, lines in unwritable.items():
        _error(progress, lines[0] if len(lines) == 1 else f"{len(lines)} outputs cannot be written: {reason}")
    return left, failed, skipped, len(exist)


def upscale_files(jobs, model, opts: Options, *, on_image=None, progress: Progress | None = None,
                  first: int = 1) -> tuple[int, int]:
    """Upscale each job; returns (written, failed); a job skipped by
    ``opts.skip_existing`` counts as neither. ``on_image(i, job, ok)`` after each; ``first``: the number
    of the first job in the progress line (when a batch is upscaled in groups)."""
    from drn_tf.core.imageio import ImageReadError, ImageWriteError
    from drn_tf.inference.files import MAX_OUTPUT_PIXELS
    from drn_tf.inference.picture import Upscaler
    from drn_tf.inference.video import VideoError

    progress = progress or Progress(len(jobs), opts.quiet)
    inputs = {os.path.realpath(j.src) for j in jobs}
    written: set = set()
    ok = failed = 0
    up = Upscaler(runtime_for=opts.runtime_for or (lambda s: model), scale=opts.scale,
                  scales=opts.scales or (opts.scale,), request=opts.request, tile=opts.tile,
                  tile_overlap=opts.tile_overlap, self_ensemble=opts.self_ensemble, max_pixels=MAX_OUTPUT_PIXELS,
                  model_id=opts.model_id)
    for i, job in enumerate(jobs, first):
        progress.start(i, str(job.src))
        success = False
        t0 = time.perf_counter()
        try:
            dst = check_output(job, opts, inputs, written)
            real = os.path.realpath(dst)
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _Fail(f"{job.src}: cannot create output folder {dst.parent}: {folder_problem(dst.parent, exc)}") from None
            if is_video(job.src):
                _video(job, dst, up, opts, progress, t0)
            else:
                _picture(job, dst, up, opts, progress, t0)
            written.add(real)
            success = True
            ok += 1
        except _Skip:
            success = True
        except _Fail as exc:
            _error(progress, str(exc))
        except (ImageReadError, ImageWriteError, FileExistsError, VideoError) as exc:
            _error(progress, str(exc))
        except MemoryError:
            _error(progress, f"{job.src}: out of memory; try a smaller --tile")
        except BrokenPipeError:
            raise  # stdout closed (drn upscale ... | head): drn_tf.cli.main stops quietly
        except OSError as exc:  # e.g. mkdir of the output folder
            where = exc.filename or job.src
            _error(progress, f"{job.src}: {where}: {exc.strerror or exc}")
        except ValueError as exc:
            _error(progress, f"{job.src}: {exc}")
        if not success:
            failed += 1
        if on_image is not None:
            on_image(i, job, success)
    progress.clear()
    return ok, failed


def _model_id(args, kind) -> str:
    """The models a run uses, in words that change when they change (a model file: its size and time)."""
    ident = f"{args.model or args.preset or 'default'}|{getattr(args, 'runtime', AUTO)}|{kind}"
    if getattr(args, "precision", None) == "bf16":
        ident += "|bf16"
    if args.model and os.path.exists(args.model):
        st = os.stat(args.model)
        ident += f"|{st.st_size}|{st.st_mtime_ns}"
    return ident


def _picture(job, dst, up, opts: Options, progress: Progress, t0: float) -> None:
    """One image input (:func:`drn_tf.inference.picture.upscale_picture`: every frame, 16 bits kept)."""
    from drn_tf.core.imageio import DEFAULT_QUALITY, format_for
    from drn_tf.inference.picture import upscale_picture

    done = upscale_picture(
        job.src, dst, format_for(dst), up, overwrite=opts.overwrite,
        quality=opts.quality or DEFAULT_QUALITY,
        keep_metadata=opts.keep_metadata,
        warn=lambda text: progress.message(f"drn upscale: warning: {text}", sys.stderr),
        progress=progress.tile,
    )
    if done.note:
        progress.message(f"drn upscale: warning: {dst}: {done.note}", sys.stderr)
    if not opts.quiet:
        (w, h), (ow, oh) = done.in_size, done.out_size
        frames = f", {done.frames} frames" if done.frames > 1 else ""
        progress.message(f"{job.src} -> {dst} ({w}x{h} -> {ow}x{oh}{frames}, {time.perf_counter() - t0:.1f} s)")


def _video(job, dst, up, opts: Options, progress: Progress, t0: float) -> None:
    """One video input (:func:`drn_tf.inference.video.upscale_video`), told as an image is."""
    from drn_tf.inference.video import upscale_video

    done = upscale_video(job.src, dst, up, opts.video, overwrite=opts.overwrite, progress=progress.frames)
    for note in done.notes:
        progress.message(f"drn upscale: warning: {dst}: {note}", sys.stderr)
    if not opts.quiet:
        (w, h), (ow, oh) = done.in_size, done.out_size
        again = f", {done.resumed_frames} already done" if done.resumed_frames else ""
        progress.message(f"{job.src} -> {dst} ({w}x{h} -> {ow}x{oh}, {done.frames} frames{again}, "
                         f"{time.perf_counter() - t0:.1f} s)")


def check_quality_and_tile(args, error) -> None:
    """The ``--quality`` and ``--tile`` values ``drn upscale`` and ``drn beam`` share; ``error`` is raised."""
    if args.tile is not None and args.tile < 0:
        raise error(f"--tile must be >= 0 (0: no tiling), got {args.tile}")
    if args.quality is not None and not 1 <= args.quality <= 100:
        raise error(f"--quality must be between 1 and 100, got {args.quality}")


def _scale_without_loading(args) -> int | None:
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


def run(args):
    from drn_tf.core.signals import cleanup_on_sigterm

    with cleanup_on_sigterm():  # SIGTERM: the temporary file being written is removed, exit 143
        return _run(args)


def _run(args):
    from drn_tf.cli.base import UserError
    from drn_tf.core.imageio import FORMAT_EXTENSIONS, FORMATS, format_for
    from drn_tf.inference.video import VIDEO_EXTENSIONS

    # ---- arguments and the shape of the run, checked before loading anything
    out = Path(args.output) if args.output else None
    first = args.inputs[0]
    # one input naming a file (even a missing one: reported as "no such file", not as an -o problem)
    single = len(args.inputs) == 1 and not Path(first).is_dir() and (Path(first).exists() or not _GLOB_CHARS & set(first))
    named = set(FORMATS) | set(VIDEO_EXTENSIONS)  # -o with one of these extensions names a file
    out_is_file = bool(out is not None and single and not out.is_dir() and out.suffix.lower() in named
                       and not args.output.endswith(("/", os.sep)))
    if out is not None and not out_is_file and not out.is_dir() and out.suffix.lower() in named:
        raise UserError(f"-o {out} names a file, but the inputs are not one image file; give a folder for -o")
    if out_is_file and args.format and out.suffix.lower() in FORMATS and format_for(out) != format_for("x" + FORMAT_EXTENSIONS[args.format]):
        raise UserError(f"-o {out} has a {out.suffix} extension but --format is {args.format}")
    check_quality_and_tile(args, UserError)
    if args.tile_overlap is not None and args.tile_overlap < 0:
        raise UserError(f"--tile-overlap must be >= 0, got {args.tile_overlap}")
    request = size_request(args, UserError)
    video = video_options(args, UserError)

    model = None
    scale = _scale_without_loading(args)
    if scale is None:  # only the model can tell: load it first
        model, scale = _load_model(args)

    # ---- inputs and outputs
    plan = expand_inputs(args.inputs, scale)
    if out is not None and not out_is_file and plan.jobs:  # nothing to write (a glob matching nothing): no folder
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output folder {out}: {folder_problem(out, exc)}; give a folder for -o") from None
        if not os.access(out, os.W_OK | os.X_OK):
            raise UserError(f"output folder {out} is not writable")
    elif out is not None:
        parent = out.parent
        if parent.exists() and not parent.is_dir():
            raise UserError(f"cannot write {out}: {parent} is not a folder")
    progress = Progress(len(plan.jobs), args.quiet)
    for text in plan.errors:
        _error(progress, text)
    if plan.skipped and not args.quiet:
        progress.message(f"skipped {len(plan.skipped)} file(s) that look like outputs of an earlier run (NAME_x{scale}.*)")
    tile = "auto" if args.tile is None else (None if args.tile == 0 else args.tile)
    opts = Options(
        scale=scale,
        out=out,
        out_is_file=out_is_file,
        fmt=args.format,
        tile=tile,
        self_ensemble=args.self_ensemble,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        quality=args.quality,
        quiet=args.quiet,
        request=request,
        video=video,
    )
    jobs, failed, skipped, existing = precheck(plan.jobs, opts, progress)

    # ---- the model(s), only if there is something to do: one per kind of input among the jobs
    ok = 0
    progress.total = len(jobs)
    done = 0
    used = []
    for kind, group in _jobs_by_kind(jobs, args, progress):
        if model is None or kind is not None:
            model, model_scale_ = _load_model(args, kind)
            used.append((model, getattr(model, "float_pixels", 0), getattr(model, "pixels", 0)))
            if model_scale_ != scale:  # cannot happen when config.json told the truth
                raise UserError(f"the model is x{model_scale_}, its file said x{scale}")
        opts.tile_overlap = _tile_overlap(args, model, tile, UserError)
        opts.model_id = _model_id(args, kind)
        if request is not None:
            opts.runtime_for, opts.scales = _runtimes_by_scale(args, model, kind)
            opts.tile_overlap = args.tile_overlap  # None: each model's own receptive radius
        ok_now, failed_now = upscale_files(group, model, opts, progress=progress, first=done + 1)
        done += len(group)
        ok += ok_now
        failed += failed_now
        skipped += len(group) - ok_now - failed_now  # outputs that appeared meanwhile (--skip-existing)
    failed += len(plan.errors)
    total = ok + failed + skipped + existing
    also = f"; {skipped} skipped (output exists)" if skipped else ""
    also = f"; {existing} not redone (output exists){also}" if existing else also
    how = f"x{scale}" if request is None else f"to {request.label()}"
    # litert-int8's saturation guard (counts since the runtime was loaded: a cached one has counted before)
    float_pixels = sum(getattr(m, "float_pixels", 0) - f0 for m, f0, _ in used)
    if float_pixels:
        share = float_pixels / max(sum(m.pixels - p0 for m, _, p0 in used), 1)
        also += f"; {share:.0%} of the pixels ran in float32 (where int8 activations clipped)"
    if failed:
        print(f"drn upscale: {failed} of {total} input(s) failed; {ok} upscaled {how}{also}", file=sys.stderr)
    elif existing:  # exit 1 too: outputs asked for were not written (said once above, with what to pass)
        print(f"drn upscale: {ok} of {total} input(s) upscaled {how}{also}", file=sys.stderr)
    elif not args.quiet:
        print(f"upscaled {ok} input(s) {how}{also}")
    return 1 if failed or existing else 0


def _jobs_by_kind(jobs, args, progress: Progress) -> list[tuple]:
    """``[(kind, jobs)]``: the jobs grouped by the kind of model they call for (``--kind``; ``auto``: photo for
    JPEG files), said once for the batch; ``[(None, jobs)]`` when a model file is given (used as it is)."""
    if not jobs:
        return []
    if args.model:
        if getattr(args, "kind", "auto") == "photo":
            progress.message("drn upscale: warning: --kind photo chooses among bundled presets; --model is used "
                             "as it is", sys.stderr)
        return [(None, jobs)]
    from drn_tf.core.degrade import input_kind

    asked = getattr(args, "kind", "auto")
    kinds = [input_kind(j.src, asked) for j in jobs]
    groups = [(k, [j for j, ik in zip(jobs, kinds) if ik.kind == k]) for k in ("clean", "photo")]
    groups = [(k, g) for k, g in groups if g]
    if asked == "auto" and not args.quiet:
        qualities = sorted(ik.jpeg_quality for ik in kinds if ik.kind == "photo")
        if qualities:
            q = f"~{qualities[0]}" if qualities[0] == qualities[-1] else f"~{qualities[0]}-{qualities[-1]}"
            progress.message(f"{len(qualities)} JPEG input(s) (quality {q}): the photo model; "
                             f"{len(jobs) - len(qualities)} other input(s): the clean model (--kind to choose)")
    return groups


def _load_model(args, kind: str | None = None):
    """Resolve the model in the runtime asked for: ``(runtime, scale)``. A runtime that is not Keras opens the
    model's exported file without TensorFlow; the backend starts (quietly) only where a model loads.
    ``kind``: the preset's variant for that kind of input (a fallback to the clean one is said once)."""
    from drn_tf.cli.base import UserError
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.models.resolve import ModelError

    quiet = getattr(args, "quiet", False)
    preset = args.preset
    if kind is not None and not args.model:
        from drn_tf.models.resolve import preset_for_kind

        try:
            preset, note = preset_for_kind(args.preset, kind, args.scale)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if note and not quiet:
            print(f"drn upscale: {note}", file=sys.stderr, flush=True)
    try:
        runtime = load_runtime(args.model, preset, args.scale, getattr(args, "runtime", AUTO),
                               precision=getattr(args, "precision", None), device=getattr(args, "device", None),
                               progress=(lambda msg: None) if quiet else lambda msg: print(f"drn upscale: {msg}",
                                                                                           file=sys.stderr, flush=True))
    except ModelError as exc:
        raise UserError(str(exc)) from None
    return runtime, runtime.scale


def _runtimes_by_scale(args, first, kind=None):
    """``(scale -> runtime, scales)`` for chains of models: ``--model`` alone (its scale only), else the
    preset family's bundled models (``drn_x2``/``drn_x3``/``drn_x4``, of the same ``kind``), each loaded on
    first use as :func:`_load_model` loads the first."""
    import argparse

    from drn_tf.inference.outsize import preset_for_scale

    if args.model:
        return (lambda s: first), (first.scale,)
    loaded = {first.scale: first}

    def runtime_for(s: int):
        if s not in loaded:
            preset = preset_for_scale(args.preset, s) if args.preset else None
            loaded[s] = _load_model(argparse.Namespace(**{**vars(args), "scale": s, "preset": preset}), kind)[0]
        return loaded[s]

    return runtime_for, (2, 3, 4)


def _tile_overlap(args, runtime, tile, error) -> int:
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
