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

This module is the command's steps; the parts live beside it: the arguments (:mod:`.arguments`), what they
ask for (:mod:`.options`), the output checks (:mod:`.outputs`), which model runs which inputs
(:mod:`.models`), the per-file loop (:mod:`.loop`), the progress line and the summary (:mod:`.report`).
"""

from __future__ import annotations

from drn_tf.cli.base import UserError
from drn_tf.cli.commands.upscale import arguments
from drn_tf.cli.commands.upscale.loop import upscale_files
from drn_tf.cli.commands.upscale.models import (
    jobs_by_kind,
    load_model,
    load_model_of_scale,
    model_id,
    runtimes_by_scale,
)
from drn_tf.cli.commands.upscale.options import (
    Options,
    check_quality_and_tile,
    check_tile_overlap,
    output_target,
    prepare_output,
    scale_without_loading,
    size_request,
    tile_overlap,
    tile_setting,
    video_options,
)
from drn_tf.cli.commands.upscale.outputs import precheck
from drn_tf.cli.commands.upscale.report import Progress, Tally, report_plan, summary
from drn_tf.inference.files import expand_inputs

# The backend is started by run() itself, after the checks (see drn_tf.cli.main).
NEEDS_BACKEND = False


def add_parser(sub, help_text):
    arguments.add_parser(sub, help_text).set_defaults(func=run)


def run(args):
    from drn_tf.core.signals import cleanup_on_sigterm

    with cleanup_on_sigterm():  # SIGTERM: the temporary file being written is removed, exit 143
        return _run(args)


def _run(args):
    # ---- arguments and the shape of the run, checked before loading anything
    out, out_is_file = output_target(args, UserError)
    check_quality_and_tile(args, UserError)
    check_tile_overlap(args, UserError)
    request = size_request(args, UserError)
    video = video_options(args, UserError)
    model, scale = None, scale_without_loading(args)
    if scale is None:  # only the model can tell: load it first
        model, scale = load_model(args)

    # ---- inputs and outputs
    plan = expand_inputs(args.inputs, scale)
    prepare_output(out, out_is_file, bool(plan.jobs), UserError)
    progress = Progress(len(plan.jobs), args.quiet)
    report_plan(progress, plan, scale, args.quiet)
    opts = Options(scale=scale, out=out, out_is_file=out_is_file, fmt=args.format, tile=tile_setting(args),
                   self_ensemble=args.self_ensemble, overwrite=args.overwrite, skip_existing=args.skip_existing,
                   quality=args.quality, quiet=args.quiet, request=request, video=video)
    jobs, failed, skipped, existing = precheck(plan.jobs, opts, progress)
    tally = Tally(failed=failed + len(plan.errors), skipped=skipped, existing=existing)

    # ---- the model(s), only if there is something to do: one per kind of input among the jobs
    _upscale_by_kind(jobs, args, model, opts, progress, tally)
    return summary(tally, f"x{scale}" if request is None else f"to {request.label()}", args.quiet)


def _upscale_by_kind(jobs, args, model, opts: Options, progress: Progress, tally: Tally) -> None:
    """Upscale ``jobs`` group by group, each with the model its kind of input calls for (``model``: the one
    loaded already to learn the scale, if any, used by a group that asks for no kind)."""
    progress.total = len(jobs)
    done = 0
    for kind, group in jobs_by_kind(jobs, args, progress):
        if model is None or kind is not None:
            model = load_model_of_scale(args, kind, opts.scale)
        tally.watch(model)
        _use_model(opts, args, model, kind, tally)
        ok, failed = upscale_files(group, model, opts, progress=progress, first=done + 1)
        done += len(group)
        tally.add(len(group), ok, failed)


def _use_model(opts: Options, args, model, kind, tally: Tally) -> None:
    """The options that follow the model: the tile overlap, the models' names, the chain of models of a size
    request (each model then tiles with its own receptive radius unless --tile-overlap is given; the tally
    counts what each of them runs)."""
    opts.tile_overlap = tile_overlap(args, model, opts.tile, UserError)
    opts.model_id = model_id(args, kind)
    if opts.request is not None:
        opts.runtime_for, opts.scales = runtimes_by_scale(args, model, kind, tally.watch)
        opts.tile_overlap = args.tile_overlap  # None: each model's own receptive radius
