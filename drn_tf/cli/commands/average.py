"""``drn average``: checkpoint averaging (uniform, as in SWA) into one ``.keras`` model,
over the files ``drn train`` writes (:func:`drn_tf.train.warmstart.average_models`)."""

from __future__ import annotations

EPILOG = """\
examples:
  drn average -o avg.keras runs/x2                      # every kept checkpoint of a run (EMA weights if kept)
  drn average -o avg.keras runs/x2/best.keras runs/x2/last.keras assets/drn_x2.keras
  drn average --preset drn_x2 -o avg.keras a.weights.h5 b.weights.h5

Then compare with 'drn evaluate --model avg.keras ...' before using the result: averaging helps
when the checkpoints lie in one basin (late checkpoints of one run, or a fine-tune and its start).
"""


def add_parser(sub, help_text):
    import argparse

    p = sub.add_parser(
        "average",
        help=help_text,
        description="Average the weights of several checkpoints of one model into a float32 .keras file "
        "(written atomically). Sources: .keras files (a run's best/last/model.keras, checkpoint/best-N.keras, "
        "bundled models), a run's checkpoint/ckpt-N.weights.h5 (its EMA weights when the run kept one), run "
        "directories (all their kept checkpoints) or, with --preset, bare .weights.h5 files. Weights trained "
        "under JAX with mixed_bfloat16 become a float32 model for any backend.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help=".keras file, run directory or .weights.h5 file")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    p.add_argument("--preset", help="the preset of bare .weights.h5 sources (not needed for .keras files and runs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (never a source)")
    p.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from drn_tf.cli.base import UserError

    from drn_tf.inference.files import output_problem, same_file

    out = Path(args.output)
    if out.suffix != ".keras":
        raise UserError(f"{out}: the output must be a .keras file")
    # before any checkpoint is read, and creating nothing (a source that matches nothing leaves no folder)
    for src in args.sources:
        if same_file(out, src):
            raise UserError(f"-o {out} is the source {src} itself; refusing to overwrite an input, choose another -o")
    problem = output_problem(out, overwrite=args.overwrite)
    if problem:
        raise UserError(f"-o: {problem}")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out}: output exists (pass --overwrite to replace it)")
    if args.preset is not None:
        from drn_tf.models.presets import get_preset

        try:
            get_preset(args.preset)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    from drn_tf.train.warmstart import average_models

    try:
        files = average_models(args.sources, out, preset=args.preset)
    except (OSError, ValueError, TypeError) as exc:  # missing, corrupt or mismatched sources
        raise UserError(str(exc).splitlines()[0]) from None
    print(f"wrote {out}: the mean of {len(files)} checkpoint{'s' if len(files) != 1 else ''}")
    for f in files:
        print(f"  {f}")
    return 0
