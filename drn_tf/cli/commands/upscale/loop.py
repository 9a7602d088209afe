"""The per-file loop of ``drn upscale``: each input upscaled and written on its own (a picture with every frame,
or a video), its failure told in one line while the others go on."""

from __future__ import annotations

import os
import time

from drn_tf.cli.commands.upscale.options import Options
from drn_tf.cli.commands.upscale.outputs import Fail, Skip, check_output
from drn_tf.cli.commands.upscale.report import Progress
from drn_tf.inference.files import folder_problem
from drn_tf.inference.video import is_video


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
                raise Fail(f"{job.src}: cannot create output folder {dst.parent}: {folder_problem(dst.parent, exc)}") from None
            if is_video(job.src):
                _video(job, dst, up, opts, progress, t0)
            else:
                _picture(job, dst, up, opts, progress, t0)
            written.add(real)
            success = True
            ok += 1
        except Skip:
            success = True
        except Fail as exc:
            progress.error(str(exc))
        except (ImageReadError, ImageWriteError, FileExistsError, VideoError) as exc:
            progress.error(str(exc))
        except MemoryError:
            progress.error(f"{job.src}: out of memory; try a smaller --tile")
        except BrokenPipeError:
            raise  # stdout closed (drn upscale ... | head): drn_tf.cli.main stops quietly
        except OSError as exc:  # e.g. mkdir of the output folder
            where = exc.filename or job.src
            progress.error(f"{job.src}: {where}: {exc.strerror or exc}")
        except ValueError as exc:
            progress.error(f"{job.src}: {exc}")
        if not success:
            failed += 1
        if on_image is not None:
            on_image(i, job, success)
    progress.clear()
    return ok, failed


def _picture(job, dst, up, opts: Options, progress: Progress, t0: float) -> None:
    """One image input (:func:`drn_tf.inference.picture.upscale_picture`: every frame, 16 bits kept)."""
    from drn_tf.core.imageio import DEFAULT_QUALITY, format_for
    from drn_tf.inference.picture import upscale_picture

    done = upscale_picture(
        job.src, dst, format_for(dst), up, overwrite=opts.overwrite,
        quality=opts.quality or DEFAULT_QUALITY,
        keep_metadata=opts.keep_metadata,
        warn=progress.warning,
        progress=progress.tile,
    )
    if done.note:
        progress.warning(f"{dst}: {done.note}")
    if not opts.quiet:
        (w, h), (ow, oh) = done.in_size, done.out_size
        frames = f", {done.frames} frames" if done.frames > 1 else ""
        progress.message(f"{job.src} -> {dst} ({w}x{h} -> {ow}x{oh}{frames}, {time.perf_counter() - t0:.1f} s)")


def _video(job, dst, up, opts: Options, progress: Progress, t0: float) -> None:
    """One video input (:func:`drn_tf.inference.video.upscale_video`), told as an image is."""
    from drn_tf.inference.video import upscale_video

    done = upscale_video(job.src, dst, up, opts.video, overwrite=opts.overwrite, progress=progress.frames)
    for note in done.notes:
        progress.warning(f"{dst}: {note}")
    if not opts.quiet:
        (w, h), (ow, oh) = done.in_size, done.out_size
        again = f", {done.resumed_frames} already done" if done.resumed_frames else ""
        progress.message(f"{job.src} -> {dst} ({w}x{h} -> {ow}x{oh}, {done.frames} frames{again}, "
                         f"{time.perf_counter() - t0:.1f} s)")
