"""``drn beam``: batch upscaling on Apache Beam (DirectRunner here; Dataflow,
Flink, Spark through pipeline options). The work is in :mod:`drn_tf.inference.beam`;
apache-beam is imported only when the command runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys

EPILOG = """\
Every option this command does not know is a Beam pipeline option; give them
after INPUT_PATTERN and OUTPUT_DIR, in the --name=value form. Examples:

  # here: 2 local worker processes
  drn beam "photos/*.jpg" out/ --model drn_x2.keras \\
      --direct_num_workers=2 --direct_running_mode=multi_processing

  # Google Cloud Dataflow (drn-tf must reach the workers: --setup_file or a container image)
  drn beam "gs://bucket/photos/**" gs://bucket/sr/ --model gs://bucket/models/drn_x2.keras \\
      --runner=DataflowRunner --project=my-project --region=europe-west1 \\
      --temp_location=gs://bucket/tmp --setup_file=./setup.py --max_num_workers=50

  # Flink / Spark (portable runners)
  drn beam "s3://bucket/in/*.png" s3://bucket/out/ --preset drn_x2 \\
      --runner=FlinkRunner --flink_master=host:8081 --environment_type=LOOPBACK
  drn beam "hdfs://in/*.png" hdfs://out/ --runner=SparkRunner --spark_master_url=spark://host:7077

Outputs are named as 'drn upscale' names them (NAME_x{s}.EXT; with a size option
NAME_x1.5.EXT, NAME_w1000.EXT, ...), each written under a hidden temporary name and
renamed. Files that fail (unreadable, too small, an existing output, ...) go to
OUTPUT_DIR/_failures.jsonl, one JSON line each ({"path", "reason", "stage"}; stage
plan, output, decode, inference or write); the others proceed. Exit status 1 if any
failed. Ctrl-C exits 130, SIGTERM 143; the temporary files of a stopped run are
removed then, and when a run starts (resume with --skip-existing).
"""


from drn_tf.cli.commands.upscale.arguments import add_size_options
from drn_tf.inference.runtimes import runtime_names, runtimes_help

# The backend (TensorFlow) is started by drn_tf.inference.beam when the model is loaded,
# after the arguments and the input pattern are checked.
NEEDS_BACKEND = False


class _BeamArgumentParser(argparse.ArgumentParser):
    """Keeps the options it does not know (Beam's) in ``beam_args`` instead of failing."""

    def parse_known_args(self, args=None, namespace=None):
        ns, extras = super().parse_known_args(args, namespace)
        ns.beam_args = list(getattr(ns, "beam_args", None) or []) + list(extras)
        return ns, []


def add_parser(sub, help_text):
    saved = sub._parser_class
    sub._parser_class = _BeamArgumentParser
    try:
        p = sub.add_parser(
            "beam",
            help=help_text,
            description="Upscale every file matching INPUT_PATTERN (a glob, or a folder searched recursively; "
            "local, gs://, s3://... wherever Beam's file systems reach) into OUTPUT_DIR with an Apache Beam "
            "pipeline: RunInference over a .keras model, a bundled preset or an exported SavedModel, loaded "
            "once per worker. Needs the extra: pip install 'drn-tf[beam]'.",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    finally:
        sub._parser_class = saved
    p.add_argument("input_pattern", metavar="INPUT_PATTERN", help="glob of image files, or a folder")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="output folder (created if needed)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default: the model's, else 2)")
    add_size_options(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="PATH", help="a .keras file or a SavedModel folder (drn export saved-model)")
    src.add_argument("--preset", metavar="NAME", help="a preset with a bundled trained model (default drn_x{scale})")
    p.add_argument("--kind", choices=("auto", "clean", "photo"), default="auto",
                   help="which variant of the preset: photo (fine-tuned for JPEG inputs), clean, or auto (default: "
                   "photo when every matched file is a .jpg/.jpeg, clean otherwise; a mixed batch is upscaled "
                   "with the clean model and said so: give the JPEGs their own pattern with --kind photo)")
    p.add_argument("--format", choices=("png", "jpg", "webp"), help="output format (default: the input's)")
    p.add_argument("--quality", type=int, metavar="Q", help="JPEG/WebP quality, 1-100 (default: 95)")
    existing = p.add_mutually_exclusive_group()  # as drn upscale's
    existing.add_argument("--overwrite", action="store_true", help="replace existing output files")
    existing.add_argument("--skip-existing", action="store_true", help="leave inputs whose output exists (resume a run)")
    p.add_argument("--tile", type=int, metavar="N", help="LR tile side as in drn upscale (default: auto; 0: never)")
    p.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    p.add_argument(
        "--runtime",
        choices=runtime_names(),
        default="keras",
        help=f"what runs a .keras model or a preset (a SavedModel runs in TensorFlow): {runtimes_help()}. "
        "TFLite models are converted once and cached; default keras",
    )
    p.add_argument(
        "--precision", choices=("float32", "bf16"), default="float32",
        help="float32 (default), or bf16 on CPUs with AVX512_BF16 or AMX (refused elsewhere): --runtime keras "
        "runs keras-bf16, openvino runs openvino-bf16, auto the faster of the two as drn upscale measured it on "
        "this machine (else keras-bf16)",
    )
    p.add_argument(
        "--share-model",
        action="store_true",
        help="one model copy per machine shared by its worker processes (RunInference large_model)",
    )
    p.set_defaults(func=run, beam_args=[])


def run(args):

    root_logger, level = logging.getLogger(), logging.getLogger().level
    if not os.environ.get("DRN_VERBOSE"):  # Beam's notices (apitools, resource module ...)
        root_logger.setLevel(logging.ERROR)
    try:
        return _run(args)
    finally:
        root_logger.setLevel(level)


def _run(args):
    from drn_tf.cli.base import UserError
    from drn_tf.cli.commands.upscale.options import check_quality_and_tile, size_request
    from drn_tf.core.signals import exit_at_once

    bad = [a for a in args.beam_args if not a.startswith("-")]
    if bad:
        raise UserError(f"unexpected argument {bad[0]!r}: give Beam pipeline options as --name=value")
    check_quality_and_tile(args, UserError)
    request = size_request(args, UserError)
    _check_output_dir(args.output_dir, UserError)
    try:
        with exit_at_once():  # Apache Beam's import takes seconds: Ctrl-C there stops at once
            from drn_tf.inference import beam as B
    except ImportError as exc:
        raise UserError(str(exc)) from None
    from drn_tf.models.resolve import ModelError, preset_for_kind

    try:
        B.check_pipeline_options(args.beam_args)
    except B.BeamError as exc:
        raise UserError(str(exc)) from None
    pattern = args.input_pattern
    try:
        matched = B.FileSystems.match([B.input_layout(pattern, args.output_dir, 2)[0]])[0].metadata_list
    except Exception as exc:  # noqa: BLE001 - Beam raises BeamIOError for unknown schemes etc.
        raise UserError(f"{pattern}: cannot list: {str(exc).splitlines()[0]}") from None
    if not matched:
        raise UserError(f"{pattern}: no files match this pattern")
    preset = args.preset
    if args.model is None:
        kind = _batch_kind(args.kind, [m.path for m in matched])
        try:  # finding the bundled files needs no Keras (drn_tf.models.resolve.bundled_file)
            preset, note = preset_for_kind(preset, kind, args.scale)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if note:
            print(f"drn beam: {note}", file=sys.stderr)
    runtime = args.runtime
    if args.precision == "bf16":  # the runtime computing in bf16 (drn_tf.inference.bf16), refused in one line
        from drn_tf.inference.runtimes import resolve_runtime

        try:
            runtime = resolve_runtime(args.runtime, precision="bf16")
        except ValueError as exc:
            raise UserError(str(exc)) from None
    from drn_tf.core.utils import quiet_stderr

    try:
        # the workers inherit stderr: their start-up logs (Beam's, TensorFlow's) are silenced
        # with it unless DRN_VERBOSE=1; per-file failures are in _failures.jsonl
        with quiet_stderr():
            stats = B.run(
                pattern,
                args.output_dir,
                model=args.model,
                preset=preset,
                scale=args.scale,
                pipeline_args=args.beam_args,
                fmt=args.format,
                overwrite=args.overwrite,
                skip_existing=args.skip_existing,
                quality=args.quality,
                tile="auto" if args.tile is None else (None if args.tile == 0 else args.tile),
                self_ensemble=args.self_ensemble,
                large_model=args.share_model,
                runtime=runtime,
                request=request,
            )
    except (ModelError, B.BeamError) as exc:
        raise UserError(str(exc)) from None
    failures = sorted(B.read_failures(args.output_dir), key=lambda r: r["path"]) if stats["failures"] else []
    for rec in failures[:20]:
        print(f"drn beam: error: {rec['path']}: {rec['reason']}", file=sys.stderr)
    if len(failures) > 20:
        print(f"drn beam: ... {len(failures) - 20} more", file=sys.stderr)
    mp = stats["output_pixels"] / 1e6
    how = f"x{stats['scale']}" if request is None else f"to {request.label()}"
    print(
        f"drn beam: {stats['images']} image(s) upscaled {how} ({mp:.2f} output megapixels), "
        f"{stats['failures']} failed, {stats['skipped']} skipped, model loaded by {stats['model_loads']} worker process(es), "
        f"{stats['seconds']:.1f} s"
    )
    if stats["failures"]:
        print(f"drn beam: failures listed in {B.FileSystems.join(args.output_dir.rstrip('/'), B.FAILURES_NAME)}",
              file=sys.stderr)
        return 1
    return 0


def _check_output_dir(output_dir: str, error) -> None:
    """A local OUTPUT_DIR that cannot be made or written is refused before Beam and TensorFlow start."""
    if "://" in output_dir:  # gs://, s3://, hdfs://...: the pipeline's writes tell
        return
    from drn_tf.inference.files import folder_problem

    problem = folder_problem(output_dir)
    if problem:
        raise error(f"OUTPUT_DIR {output_dir}: {problem}")


def _batch_kind(asked: str, paths) -> str:
    """``--kind`` for the whole pipeline: as asked, or (auto) photo when every input is named .jpg/.jpeg (the
    pipeline runs one model; a file's header is not read here, remote files included)."""
    if asked != "auto":
        return asked
    jpeg = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
    if jpeg and len(jpeg) < len(paths):
        print(f"drn beam: {len(jpeg)} of {len(paths)} inputs are JPEGs: all are upscaled with the clean model "
              "(run the JPEGs with their own pattern and --kind photo)", file=sys.stderr)
    return "photo" if jpeg and len(jpeg) == len(paths) else "clean"
