"""Which model runs which inputs: the inputs grouped by the kind of model they call for (``--kind``), each
group's model loaded in the runtime asked for, the family of models a chain of scales runs, and the words
that name them (a video job resumes only with the same)."""

from __future__ import annotations

import os
import sys

from drn_tf.cli.base import UserError
from drn_tf.cli.commands.upscale.report import Progress
from drn_tf.inference.runtimes import AUTO


def jobs_by_kind(jobs, args, progress: Progress) -> list[tuple]:
    """``[(kind, jobs)]``: the jobs grouped by the kind of model they call for (``--kind``; ``auto``: photo for
    JPEG files), said once for the batch; ``[(None, jobs)]`` when a model file is given (used as it is)."""
    if not jobs:
        return []
    if args.model:
        if getattr(args, "kind", "auto") == "photo":
            progress.warning("--kind photo chooses among bundled presets; --model is used as it is")
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


def load_model(args, kind: str | None = None):
    """Resolve the model in the runtime asked for: ``(runtime, scale)``. A runtime that is not Keras opens the
    model's exported file without TensorFlow; the backend starts (quietly) only where a model loads.
    ``kind``: the preset's variant for that kind of input (a fallback to the clean one is said once)."""
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


def load_model_of_scale(args, kind: str | None, scale: int):
    """:func:`load_model`, checked to be the ``scale`` the arguments told before it loaded."""
    runtime, model_scale = load_model(args, kind)
    if model_scale != scale:  # cannot happen when config.json told the truth
        raise UserError(f"the model is x{model_scale}, its file said x{scale}")
    return runtime


def runtimes_by_scale(args, first, kind=None, watch=lambda runtime: None):
    """``(scale -> runtime, scales)`` for chains of models: ``--model`` alone (its scale only), else the
    preset family's bundled models (``drn_x2``/``drn_x3``/``drn_x4``, of the same ``kind``), each loaded on
    first use as :func:`load_model` loads the first and handed to ``watch`` (:meth:`.report.Tally.watch`)."""
    import argparse

    from drn_tf.inference.outsize import preset_for_scale

    if args.model:
        return (lambda s: first), (first.scale,)
    loaded = {first.scale: first}

    def runtime_for(s: int):
        if s not in loaded:
            preset = preset_for_scale(args.preset, s) if args.preset else None
            loaded[s] = load_model(argparse.Namespace(**{**vars(args), "scale": s, "preset": preset}), kind)[0]
            watch(loaded[s])
        return loaded[s]

    return runtime_for, (2, 3, 4)


def model_id(args, kind) -> str:
    """The models a run uses, in words that change when they change (a model file: its size and time)."""
    ident = f"{args.model or args.preset or 'default'}|{getattr(args, 'runtime', AUTO)}|{kind}"
    if getattr(args, "precision", None) == "bf16":
        ident += "|bf16"
    if args.model and os.path.exists(args.model):
        st = os.stat(args.model)
        ident += f"|{st.st_size}|{st.st_mtime_ns}"
    return ident
