"""``drn upscale``'s arguments: the parser, and the option groups ``drn beam`` and ``drn evaluate`` share.

Definitions only: what the values mean together is checked in :mod:`drn_tf.cli.commands.upscale.options`.
"""

from __future__ import annotations

from drn_tf.inference.runtimes import AUTO, runtime_names, runtimes_help


def _presets_epilog() -> str:
    from drn_tf.core.utils import assets_dir
    from drn_tf.models.presets import PRESETS

    folder = assets_dir()
    lines = [f"  {name:9s} {PRESETS[name]['description']}"
             + ("" if (folder / PRESETS[name]["asset"]).is_file() else " (no bundled weights)")
             for name in sorted(PRESETS)]
    return "presets (--preset NAME; default drn_x{scale}):\n" + "\n".join(lines)


def add_parser(sub, help_text):
    """The ``upscale`` subparser with every option (the caller sets what runs it)."""
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
    return p


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
    """The video options (codec and quality of the re-encoded stream)."""
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
