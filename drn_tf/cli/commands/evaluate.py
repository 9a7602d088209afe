"""``drn evaluate``: PSNR/SSIM on benchmark folders by the literature's protocol.

The protocol itself lives in :mod:`drn_tf.inference.evaluation`; this module only parses
arguments, resolves the model and prints/saves the results.
"""

from __future__ import annotations

from drn_tf.cli.commands.upscale.arguments import add_precision_device_options
from drn_tf.inference.runtimes import runtime_names, runtimes_help


def add_parser(sub, help_text):
    p = sub.add_parser(
        "evaluate",
        help=help_text,
        description="Evaluate a DRN model (or the bicubic baseline) on benchmark folders of HR images: "
        "LR made by MATLAB-exact bicubic, Y-channel PSNR/SSIM with the border cropped by the scale, "
        "averaged per set. Prints a markdown table; --json writes every per-image number.",
        epilog="Single-channel images (Set14 bridge.png) are evaluated on their one channel: the model "
        "sees the grey replicated to RGB and its output is averaged back to one channel. "
        "Example: drn evaluate --data ../shared/data/benchmark/Set5 --scale 2 --method bicubic",
    )
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="benchmark folder(s) (or image files) of HR images, one set each")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=None,
                   help="upscaling factor (default: the scale of --model/--preset; required otherwise)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a preset with bundled trained weights (default: drn_x{scale})")
    src.add_argument("--model", metavar="FILE", help="a trained .keras model file")
    src.add_argument("--method", choices=("bicubic",), help="evaluate a non-learned baseline instead of a model")
    p.add_argument("--degrade", metavar="SPEC",
                   help="degrade the protocol's LR before the method sees it, bicubic included, and report the "
                   "gain over bicubic on the same input: jpeg:Q (Pillow JPEG at quality Q), noise:SIGMA (Gaussian, "
                   "0-255 levels), clean; a comma list makes a table, a bare number repeats the kind before it "
                   "(e.g. clean,jpeg:95,85,75,50)")
    p.add_argument("--runtime", choices=runtime_names(), default="keras",
                   help="what runs the model (default keras: the reference); another runtime measures what it "
                   "gives, e.g. litert-int8 the int8 model's PSNR (its loss: the difference to keras's) or "
                   f"onnxruntime the ONNX export's: {runtimes_help()}")
    add_precision_device_options(p)
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the model over the 8 flips/rotations (8x slower)")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help="run the model on LR tiles of NxN pixels (same result, less memory; default: whole image)")
    p.add_argument("--save-images", metavar="DIR",
                   help="write the SR images as PNG to DIR/<set>/ (existing files there are replaced)")
    p.add_argument("--json", metavar="FILE",
                   help="write all results (per image and per set) as JSON ('-' = stdout); the path is checked "
                   "before the evaluation starts")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip unreadable image files (named in a warning) instead of refusing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    from drn_tf.core.signals import cleanup_on_sigterm

    with cleanup_on_sigterm():  # SIGTERM: a --save-images file being written is removed, exit 143
        return _run(args)


def _run(args):
    import json
    import sys
    import time
    import warnings
    from pathlib import Path

    from drn_tf.cli.base import UserError
    from drn_tf.core.imageio import ImageReadError
    from drn_tf.inference.evaluation import (
        degraded_table,
        evaluate_degraded,
        evaluate_folders,
        markdown_table,
        results_to_dict,
    )

    for d in args.data:
        if not Path(d).exists():
            raise UserError(f"--data {d}: no such file or directory")
    # output paths: checked before the (possibly long) evaluation, not after it
    if args.json and args.json != "-":
        _check_writable_file("--json", Path(args.json), UserError)
    if args.save_images:
        _check_writable_folder("--save-images", Path(args.save_images), UserError)
    if args.self_ensemble and args.method == "bicubic":
        raise UserError("--self-ensemble applies to a model, not to --method bicubic")
    degradations = None
    if args.degrade is not None:
        from drn_tf.core.degrade import parse_degradations

        try:
            degradations = parse_degradations(args.degrade)
        except ValueError as exc:
            raise UserError(f"--degrade: {exc}") from None

    model, label, scale = None, "bicubic", args.scale
    if args.method == "bicubic":
        if scale is None:
            raise UserError("--scale is required with --method bicubic")
    else:
        from drn_tf.models.resolve import (
            ModelError,
            NoTrainedModelError,
            model_scale,
            resolve,
        )

        if args.model is None and args.preset is None and scale is None:
            raise UserError("give --scale (the default model is the preset drn_x{scale}), --preset or --model")
        try:
            resolved = resolve(args.model, args.preset, scale, cache=True)
            model = resolved.model
            if args.runtime != "keras" or args.precision == "bf16" or args.device:
                from drn_tf.inference.runtimes import load_runtime

                # the .keras file or the preset: the runtime opens its export (the shipped or cached file), as
                # drn upscale does
                model = load_runtime(args.model, None if args.model else resolved.name, None, args.runtime,
                                     precision=args.precision, device=args.device,
                                     progress=lambda msg: print(f"drn evaluate: {msg}", file=sys.stderr, flush=True))
        except NoTrainedModelError as exc:
            raise UserError(
                f"no trained weights are bundled for preset {exc.preset} (assets/{exc.preset}.keras is missing); "
                "evaluating random weights would be meaningless: pass --model FILE or --method bicubic"
            ) from None
        except (ModelError, ValueError) as exc:  # (a precision this CPU cannot compute in is a ValueError)
            raise UserError(str(exc)) from None
        label = args.model if args.model is not None else f"preset {resolved.name}"
        scale = model_scale(resolved.model)
        if model is not resolved.model:
            label += f", {model.name}"
        if args.self_ensemble:
            label += " +self-ensemble"

    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            common = dict(self_ensemble=args.self_ensemble, tile=args.tile, save_dir=args.save_images,
                          on_error="skip" if args.skip_unreadable else "raise", progress=not args.quiet)
            if degradations is None:
                results = evaluate_folders(args.data, scale, model, method="bicubic" if model is None else "model",
                                           **common)
            else:
                results = evaluate_degraded(args.data, scale, model, degradations, **common)
        except ImageReadError as exc:
            raise UserError(f"{exc} (use --skip-unreadable to skip it)") from None
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:  # only writing touches the disk (reading errors are ImageReadError)
            if not args.save_images:
                raise
            raise UserError(f"--save-images {args.save_images}: {exc.strerror or exc}") from None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    elapsed = time.monotonic() - t0

    if degradations is None:
        table = markdown_table(results, title=f"x{scale}, {label}")
    else:
        table = degraded_table(results, title=f"x{scale}, {label}, degraded LR (gain: over bicubic on the same LR)")
    if args.json != "-":
        print(table)
    if args.json:
        payload = results_to_dict(
            results if degradations is None else [], scale=scale, method="bicubic" if model is None else "model", model=label,
            self_ensemble=bool(args.self_ensemble), elapsed_s=round(elapsed, 3),
        )
        if degradations is not None:
            del payload["sets"]
            payload["degradations"] = [r.to_dict() for r in results]
        text = json.dumps(payload, indent=2)
        if args.json == "-":
            print(text)
        else:
            from drn_tf.core.utils import write_atomic

            out = Path(args.json)
            try:
                write_atomic(out, text + "\n")
            except OSError as exc:  # e.g. the disk filled up during the evaluation
                print(text)  # the results are not lost
                raise UserError(f"--json {out}: cannot write: {exc.strerror or exc}; the results are printed above") from None
            print(f"results written to {out}", file=sys.stderr)
    return 0


def _check_writable_folder(option: str, folder, error):
    """Create ``folder`` if needed and prove it takes a new file; ``error`` names ``option``."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        from drn_tf.inference.files import folder_problem

        raise error(f"{option} {folder}: cannot write there: {folder_problem(folder, exc)}") from None


def _check_writable_file(option: str, path, error):
    """Prove a new file can be written at ``path`` (:func:`drn_tf.inference.files.output_problem`: a folder
    there, a file in the way of its folder, a folder that is not writable), creating nothing."""
    from drn_tf.inference.files import output_problem

    problem = output_problem(path)
    if problem:
        raise error(f"{option}: {problem}")
