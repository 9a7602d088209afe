"""Where each input's output goes, and whether it may be written there: the checks that need no pixels, run for
every input before the model loads (:func:`precheck`) and again right before each write (:func:`check_output`).
An output is never an input, never another input's output, never an existing file without ``--overwrite``."""

from __future__ import annotations

import os
from pathlib import Path

from drn_tf.cli.commands.upscale.options import Options
from drn_tf.cli.commands.upscale.report import Progress
from drn_tf.inference.files import Job, folder_problem, output_path, output_problem, same_file
from drn_tf.inference.video import is_video, video_output_path


class Fail(Exception):
    """This input fails (the message says why); the others go on."""


class Skip(Exception):
    """The output exists and --skip-existing was given."""


class Exists(Fail):
    """The output exists and neither --overwrite nor --skip-existing was given."""


class Unwritable(Fail):
    """The output cannot be written there (args: the message, the reason shared by a folder's outputs)."""


def check_output(job: Job, opts: Options, inputs: set, claimed: set) -> Path:
    """The output path of ``job``, or :class:`Fail` / :class:`Skip`: the
    checks that need no pixels (run for every input before the model loads,
    and again right before each write). ``inputs``: real paths of this run's
    inputs; ``claimed``: real paths already written (or planned) in this run."""
    dst = output_path(job, scale=opts.label, out=opts.out, out_is_file=opts.out_is_file, fmt=opts.fmt)
    if opts.video is not None and is_video(job.src):
        dst = video_output_path(dst, opts.video)
    real = os.path.realpath(dst)
    if same_file(dst, job.src):
        raise Fail(f"{job.src}: output path {dst} is the input file itself; choose another -o")
    if real in inputs:
        raise Fail(f"{job.src}: output {dst} is another input of this run; refusing to overwrite it")
    if real in claimed:
        raise Fail(f"{job.src}: output {dst} is also the output of another input of this run")
    if dst.exists() and not opts.overwrite:
        if opts.skip_existing:
            raise Skip(str(dst))
        raise Exists(f"{job.src}: output {dst} exists (pass --overwrite to replace it, or --skip-existing)", dst)
    problem = output_problem(dst, overwrite=opts.overwrite)
    if problem:
        raise Unwritable(f"{job.src}: {problem}", folder_problem(dst.parent) or problem)
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
        except Skip:
            skipped += 1
            continue
        except Exists as exc:
            exist.append(exc)
            continue
        except Unwritable as exc:
            unwritable.setdefault(exc.args[1], []).append(exc.args[0])
            failed += 1
            continue
        except Fail as exc:
            progress.error(str(exc))
            failed += 1
            continue
        claimed.add(os.path.realpath(dst))
        left.append(job)
    if len(exist) == 1:
        progress.error(exist[0].args[0])
    elif exist:  # a folder job run again: said once, not once per file
        progress.error(f"{len(exist)} outputs exist already (the first: {exist[0].args[1]}); pass "
                       "--skip-existing to leave them and do the rest, or --overwrite to replace them")
    for reason, lines in unwritable.items():
        progress.error(lines[0] if len(lines) == 1 else f"{len(lines)} outputs cannot be written: {reason}")
    return left, failed, skipped, len(exist)
