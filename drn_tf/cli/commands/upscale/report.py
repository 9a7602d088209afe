"""What ``drn upscale`` tells while and after it runs: the progress line and messages (:class:`Progress`), the
inputs the plan set aside, and the closing summary with the exit status (:class:`Tally`, :func:`summary`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


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

    def error(self, text: str):
        """``drn upscale: error: TEXT`` on stderr (one input's failure: the others go on)."""
        self.message(f"drn upscale: error: {text}", sys.stderr)

    def warning(self, text: str):
        self.message(f"drn upscale: warning: {text}", sys.stderr)


def report_plan(progress: Progress, plan, scale: int, quiet: bool) -> None:
    """The inputs :func:`drn_tf.inference.files.expand_inputs` could not use (errors) or left out (earlier
    outputs)."""
    for text in plan.errors:
        progress.error(text)
    if plan.skipped and not quiet:
        progress.message(f"skipped {len(plan.skipped)} file(s) that look like outputs of an earlier run (NAME_x{scale}.*)")


@dataclass
class Tally:
    """What became of a run's inputs, and the runtimes that ran them."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0  # the output existed: --skip-existing left it
    existing: int = 0  # the output existed: not redone (exit 1)
    watched: list = field(default_factory=list)  # (runtime, float_pixels, pixels) when it was loaded

    def add(self, count: int, ok: int, failed: int) -> None:
        """A group of ``count`` inputs: ``ok`` written, ``failed``; the rest skipped (outputs that appeared
        meanwhile, --skip-existing)."""
        self.ok += ok
        self.failed += failed
        self.skipped += count - ok - failed

    def watch(self, runtime) -> None:
        """Count what ``runtime`` runs from now on (litert-int8's saturation guard; a cached runtime has
        counted before); a runtime watched already goes on counting from when it was first watched."""
        if any(m is runtime for m, _, _ in self.watched):
            return
        self.watched.append((runtime, getattr(runtime, "float_pixels", 0), getattr(runtime, "pixels", 0)))

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.skipped + self.existing

    def float_share(self) -> float:
        """The share of the pixels litert-int8 ran in float32 (where int8 activations clipped), over every pixel
        each watched runtime ran (all the models of a chain); 0 for others."""
        float_pixels = sum(getattr(m, "float_pixels", 0) - f0 for m, f0, _ in self.watched)
        if not float_pixels:
            return 0.0
        return float_pixels / max(sum(m.pixels - p0 for m, _, p0 in self.watched), 1)


def summary(tally: Tally, how: str, quiet: bool) -> int:
    """The closing line (stderr when something failed or was not redone, else stdout unless ``quiet``) and the
    exit status: 1 if any input failed or an output existed already, else 0. ``how``: ``x2``, ``to 1000x800``."""
    also = f"; {tally.skipped} skipped (output exists)" if tally.skipped else ""
    also = f"; {tally.existing} not redone (output exists){also}" if tally.existing else also
    share = tally.float_share()
    if share:
        also += f"; {share:.0%} of the pixels ran in float32 (where int8 activations clipped)"
    if tally.failed:
        print(f"drn upscale: {tally.failed} of {tally.total} input(s) failed; {tally.ok} upscaled {how}{also}",
              file=sys.stderr)
    elif tally.existing:  # exit 1 too: outputs asked for were not written (said once above, with what to pass)
        print(f"drn upscale: {tally.ok} of {tally.total} input(s) upscaled {how}{also}", file=sys.stderr)
    elif not quiet:
        print(f"upscaled {tally.ok} input(s) {how}{also}")
    return 1 if tally.failed or tally.existing else 0
