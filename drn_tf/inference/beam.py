"""Batch upscaling on Apache Beam (``pip install "drn-tf[beam]"``; ``drn beam``).

The pipeline (:func:`build_pipeline`), one file per element all the way::

    MatchFiles(pattern) -> plan (output name, filters) -> GroupByKey(output name)
      -> ReadMatches -> decode (drn_tf.core.imageio.read_image, as drn upscale)
      -> RunInference(KeyedModelHandler(DRNModelHandler))     key = input path
      -> write (drn_tf.core.imageio.save_image's encoding; temp name + FileSystems.rename)
    every failing file -> one JSON line {"path", "reason", "stage"} in OUTPUT_DIR/_failures.jsonl

* Output names are ``drn upscale``'s (:func:`drn_tf.inference.files.output_path`):
  ``NAME_x{s}.EXT`` in ``OUTPUT_DIR`` (a folder input keeps its sub-folders).
  The ``GroupByKey`` on the output name refuses a second input that would
  write the same output (and spreads the files over the workers: ``MatchFiles``
  alone would leave them all on one).
* Decoding, tiling, rounding and encoding are the ones ``drn upscale`` uses,
  so with the same ``.keras`` model and runtime the outputs are byte-identical (tested).
* :class:`DRNModelHandler` is a ``RunInference`` model handler over a
  ``.keras`` file or a bundled preset in any runtime of
  :data:`drn_tf.inference.runtimes.RUNTIMES` (``drn beam --runtime``; default
  ``keras``), or an exported SavedModel (``drn export saved-model`` layout, its
  ``serving_default`` uint8 signature), one image per call, tiled like ``drn upscale`` so memory is bounded whatever the
  image size. RunInference loads the model once per worker process
  (``shared.Shared``); ``large_model=True`` (``drn beam --share-model``)
  loads one copy per machine shared by all its worker processes.
* Any output size (``request``, a :class:`~drn_tf.inference.outsize.SizeRequest`: ``drn beam
  --outscale/--width/--height/--max-side``) as ``drn upscale`` gives it: the preset family's models
  in a row, then MATLAB bicubic (:func:`drn_tf.inference.picture.upscale_image`); outputs named
  ``NAME_x1.5.EXT``, ``NAME_w1000.EXT`` ...
* Temporary files: outputs are written to a hidden ``.NAME.<12 hex>.tmp`` beside them and renamed;
  the failure records go through Beam's ``beam-temp-_failures-*`` folder; decoding and encoding use
  local scratch folders ``drn-beam-<pid>-*``. :func:`run` removes what an interrupted run left
  (:func:`sweep`) before it starts and when it ends, however it ends (Ctrl-C, SIGTERM, a failure).
  Two runs into one ``OUTPUT_DIR`` at the same time are not supported.
* Failure stages: ``plan`` (two inputs, one output name), ``output`` (the output exists),
  ``decode``, ``inference``, ``write``.
* Metrics (namespace ``drn``): counters ``images``, ``output_pixels``,
  ``failures``, ``skipped``, ``model_loads`` (worker processes that loaded the
  model, or attached to the shared copy with ``large_model``); distribution
  ``output_kilopixels``.

Nothing here is imported by ``import drn_tf``; apache-beam is imported on use.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import PurePosixPath

import numpy as np

from drn_tf.inference.beam_temp import scratch_prefix, sweep, temporary_name
from drn_tf.inference.savedmodel import SavedModelRuntime

try:
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.metrics import Metrics
    from apache_beam.ml.inference.base import (
        KeyedModelHandler,
        ModelHandler,
        PredictionResult,
        RunInference,
    )
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"drn_tf.inference.beam needs apache-beam ({_exc}); install it with: pip install 'drn-tf[beam]'"
    ) from _exc

NAMESPACE = "drn"
FAILURES_NAME = "_failures.jsonl"
FAILED = "failed"
_LOG = logging.getLogger("drn_tf.inference.beam")
_MODELS_SEEN: set = set()  # Upscaler.ident() of the models used in this process


class BeamError(ValueError):
    """A pipeline that cannot be built as asked (one line, for ``drn beam``)."""


# ---------------------------------------------------------------- paths


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(str(path)) in (None, "file")


def saved_model_version_dir(path) -> str | None:
    """``path`` itself if it holds ``saved_model.pb``, else its highest numeric
    sub-folder that does (the ``drn export saved-model`` / TF Serving layout);
    None if ``path`` is not a SavedModel."""
    path = str(path)
    if FileSystems.exists(FileSystems.join(path, "saved_model.pb")):
        return path
    try:
        found = FileSystems.match([FileSystems.join(path, "*", "saved_model.pb")])[0].metadata_list
    except Exception:  # noqa: BLE001 - no such folder / not listable: not a SavedModel
        return None
    versions = []
    for m in found:
        name = posixpath.basename(posixpath.dirname(m.path.replace(os.sep, "/")))
        if name.isdigit():
            versions.append((int(name), posixpath.dirname(m.path)))
    return max(versions)[1] if versions else None


def _local_copy(path: str, folder: str) -> str:
    """A local copy of a (possibly remote) file, for APIs that want a path."""
    if is_local(path):
        return path
    dst = os.path.join(folder, posixpath.basename(path.rstrip("/")) or "file")
    with FileSystems.open(path) as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    return dst


# ---------------------------------------------------------------- the model


class SavedModelUpscaler(SavedModelRuntime):
    """The SavedModel runtime (:class:`drn_tf.inference.savedmodel.SavedModelRuntime`) of a
    ``drn export saved-model`` folder anywhere Beam's file systems reach: ``path`` itself or its
    highest numbered version (:func:`saved_model_version_dir`)."""

    def __init__(self, path: str):
        version = saved_model_version_dir(path)
        if version is None:
            raise BeamError(f"{path}: not a SavedModel (no saved_model.pb in it or in a numbered sub-folder)")
        super().__init__(version)


def load_upscaling_model(model=None, preset: str | None = None, scale: int | None = None, runtime: str = "keras"):
    """A ``.keras`` file, a SavedModel folder (local or any Beam file system) or
    a bundled preset -> the :class:`drn_tf.inference.runtime.Runtime` that runs it: a SavedModel in
    TensorFlow, the others in ``runtime`` (a name of :data:`drn_tf.inference.runtimes.RUNTIMES`).
    Raises :class:`drn_tf.models.resolve.ModelError` / :class:`BeamError` with one-line reasons."""
    from drn_tf.inference.runtime import check_runtime_scale
    from drn_tf.inference.runtimes import AUTO, load_runtime, resolve_runtime
    from drn_tf.models.backend import import_backend_quietly
    from drn_tf.models.resolve import ModelError

    resolve_runtime(runtime)  # an unknown name fails before anything loads
    if model is not None and saved_model_version_dir(model) is not None:
        import_backend_quietly()  # a SavedModel runs in TensorFlow; other models start it only if they load
        if runtime not in (None, AUTO, "keras"):
            raise BeamError(f"{model}: a SavedModel runs in TensorFlow; --runtime {runtime} needs a .keras model "
                            "or a preset")
        return check_runtime_scale(SavedModelUpscaler(str(model)), scale, str(model))
    if model is not None and not is_local(str(model)):
        if not FileSystems.exists(str(model)):
            raise ModelError(f"{model}: model file not found")
        folder = tempfile.mkdtemp(prefix=scratch_prefix() + "model-")
        model = _local_copy(str(model), folder)
    return load_runtime(model, preset, scale, runtime)


class Upscaler:
    """What :meth:`DRNModelHandler.load_model` returns: a runtime plus the tiling
    ``drn upscale`` uses (``tile="auto"``: images over 512x512 in tiles of at
    most 256, overlap = the receptive radius). One method, so it also works
    behind Beam's cross-process proxy (``large_model=True``)."""

    def __init__(self, model, tile="auto", tile_overlap=None, self_ensemble=False, request=None, runtime_for=None,
                 scales=()):
        self.model, self.tile, self.tile_overlap, self.self_ensemble = model, tile, tile_overlap, self_ensemble
        self.request, self.scales = request, tuple(scales) or (model.scale,)
        self._runtime_for = runtime_for or (lambda s: model)
        self._uid = uuid.uuid4().hex

    def ident(self) -> str:
        """Unique per loaded model (counts loads, also through Beam's proxy)."""
        return self._uid

    def upscale(self, image: np.ndarray) -> np.ndarray:
        """``image`` by the model's scale, or to the size ``request`` asks, as ``drn upscale`` does."""
        from drn_tf.inference.picture import Upscaler as How
        from drn_tf.inference.picture import upscale_image

        how = How(runtime_for=self._runtime_for, scale=self.model.scale, scales=self.scales, request=self.request,
                  tile=self.tile, tile_overlap=self.tile_overlap, self_ensemble=self.self_ensemble)
        return upscale_image(image, how)


class DRNModelHandler(ModelHandler):
    """``RunInference`` handler: uint8 image arrays ``(H, W, C)`` of any size
    (C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA, as :func:`drn_tf.core.imageio.read_image`
    gives them) -> uint8 arrays ``(H*s, W*s, C)``, one image per call.

    ``model``: a ``.keras`` file or a SavedModel folder (local, ``gs://``,
    ``s3://``... wherever Beam's file systems reach); else ``preset`` (its
    bundled model). ``runtime``: what runs a ``.keras`` model or a preset
    (:data:`drn_tf.inference.runtimes.RUNTIMES`; TFLite files are converted once
    per machine and cached). Wrap it in ``KeyedModelHandler`` to carry a key (the
    file path). The model is loaded by ``load_model``, which RunInference
    calls once per worker process (or once per machine with
    ``large_model=True``), never per image.
    """

    def __init__(
        self,
        model: str | None = None,
        preset: str | None = None,
        scale: int | None = None,
        *,
        tile="auto",
        tile_overlap: int | None = None,
        self_ensemble: bool = False,
        large_model: bool = False,
        runtime: str = "keras",
        request=None,
    ):
        super().__init__(min_batch_size=1, max_batch_size=1, large_model=large_model)
        self.request = request if request is not None and request.active else None
        self.model_path = None if model is None else str(model)
        self.preset, self.scale, self.runtime = preset, scale, runtime
        self.tile, self.tile_overlap, self.self_ensemble = tile, tile_overlap, self_ensemble

    def load_model(self) -> Upscaler:
        from drn_tf.inference.outsize import preset_for_scale

        t0 = time.perf_counter()
        model = load_upscaling_model(self.model_path, self.preset, self.scale, self.runtime)
        _LOG.info("drn: model %s loaded in %.1f s (pid %d)", self.model_path or self.preset, time.perf_counter() - t0,
                  os.getpid())
        if self.request is None:
            return Upscaler(model, self.tile, self.tile_overlap, self.self_ensemble)
        loaded = {model.scale: model}

        def runtime_for(s: int):  # the preset family's model of scale s, loaded on first use
            if s not in loaded:
                loaded[s] = load_upscaling_model(None, preset_for_scale(self.preset, s), s, self.runtime)
            return loaded[s]

        return Upscaler(model, self.tile, self.tile_overlap, self.self_ensemble, self.request, runtime_for,
                        self.scales())

    def scales(self) -> tuple:
        """The scales a size request may chain: the preset family's (2, 3, 4), or the one model's."""
        return (2, 3, 4) if self.model_path is None else (self.scale,)

    def run_inference(self, batch, model, inference_args=None):
        # Beam does not report metrics from setup (where load_model runs), so a
        # load is counted on the first use of each loaded model in each process.
        uid = model.ident()
        if uid not in _MODELS_SEEN:
            _MODELS_SEEN.add(uid)
            Metrics.counter(NAMESPACE, "model_loads").inc()
        return [PredictionResult(image, model.upscale(image), model_id=self.model_path or self.preset) for image in batch]

    def get_num_bytes(self, batch) -> int:
        return int(sum(np.asarray(x).nbytes for x in batch))

    def get_metrics_namespace(self) -> str:
        return "drn_RunInference"

    def __repr__(self):
        return f"DRNModelHandler(model={self.model_path!r}, preset={self.preset!r}, scale={self.scale})"


# ---------------------------------------------------------------- the pipeline's steps


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each input's output goes; the same naming as ``drn upscale``.

    ``base``: the input folder when the input was a folder (sub-folders are
    kept, only image extensions, no hidden files), else None (outputs go
    flat into ``output_dir``). ``request``: a size request (names ``NAME_x1.5``, ``NAME_w1000`` ...),
    whose models may chain ``scales``."""

    output_dir: str
    scale: int
    fmt: str | None = None
    base: str | None = None
    request: object = None  # drn_tf.inference.outsize.SizeRequest
    scales: tuple = (2, 3, 4)

    @property
    def tag(self):
        """The output name's tag: the scale, or the size request's label."""
        return self.request.label() if self.request is not None else self.scale

    def check_size(self, w: int, h: int) -> None:
        """ValueError for an input too small, or whose output would be too large, as drn upscale refuses it."""
        from drn_tf.inference.files import MAX_OUTPUT_PIXELS, check_output_size
        from drn_tf.inference.outsize import plan_size

        if self.request is None:
            check_output_size(w, h, self.scale)
        else:
            plan_size(w, h, self.request, self.scales, MAX_OUTPUT_PIXELS)

    def relative(self, src: str) -> PurePosixPath:
        src = src.replace(os.sep, "/")
        if self.base is not None:
            base = self.base.replace(os.sep, "/").rstrip("/") + "/"
            if src.startswith(base):
                return PurePosixPath(src[len(base):])
        return PurePosixPath(posixpath.basename(src))

    def wanted(self, src: str) -> bool:
        """Folder inputs take image files only, skipping hidden ones (as drn upscale)."""
        if self.base is None:
            return True
        from drn_tf.core.imageio import is_image_name

        return is_image_name(self.relative(src))

    def looks_like_output(self, src: str) -> bool:
        """NAME_x{s}.EXT inside OUTPUT_DIR (when it lies under the input pattern):
        an output of this or an earlier run, not an input."""
        tag = self.tag if isinstance(self.tag, str) else f"x{self.tag}"
        if not PurePosixPath(src.replace(os.sep, "/")).stem.endswith(f"_{tag}"):
            return False
        out = self.output_dir.replace(os.sep, "/").rstrip("/") + "/"
        if is_local(out):
            out = os.path.realpath(out).replace(os.sep, "/").rstrip("/") + "/"
            src = os.path.realpath(src)
        return src.replace(os.sep, "/").startswith(out)

    def destination(self, src: str) -> str:
        from drn_tf.inference.files import Job, output_path

        rel = self.relative(src)
        name = output_path(Job(PurePosixPath(rel.name), rel), scale=self.tag, out=PurePosixPath("."),
                           out_is_file=False, fmt=self.fmt)
        return FileSystems.join(self.output_dir.rstrip("/"), *name.parts)


def failure(path: str, reason: str, stage: str) -> dict:
    reason = str(reason).strip().splitlines()[0] if str(reason).strip() else "failed"
    prefix = f"{path}: "
    if reason.startswith(prefix):  # the library's messages name the file; the record has it already
        reason = reason[len(prefix):]
    return {"path": path, "reason": reason, "stage": stage}


class _Plan(beam.DoFn):
    """FileMetadata -> (output path, input path); drops what drn upscale would not take."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def process(self, metadata):
        src = metadata.path
        if not self.layout.wanted(src):
            return
        if self.layout.looks_like_output(src):
            Metrics.counter(NAMESPACE, "skipped").inc()
            return
        yield self.layout.destination(src), src


def _one_per_output(item):
    dst, srcs = item
    srcs = sorted(srcs)
    yield srcs[0]
    for other in srcs[1:]:
        yield beam.pvalue.TaggedOutput(
            FAILED, failure(other, f"output {dst} is also the output of {srcs[0]}; refusing to overwrite it", "plan")
        )


class _Decode(beam.DoFn):
    """ReadableFile -> (path, uint8 image with alpha appended), exactly as drn upscale reads it."""

    def __init__(self, layout: Layout, overwrite: bool, skip_existing: bool):
        self.layout, self.overwrite, self.skip_existing = layout, overwrite, skip_existing

    def process(self, readable):
        from drn_tf.core.imageio import ImageReadError, read_image

        src = readable.metadata.path
        dst = self.layout.destination(src)
        if FileSystems.exists(dst) and not self.overwrite:
            if self.skip_existing:
                Metrics.counter(NAMESPACE, "skipped").inc()
                return
            yield beam.pvalue.TaggedOutput(FAILED, failure(
                src, f"output {dst} exists (pass --overwrite to replace it, or --skip-existing)", "output"))
            return
        try:
            with tempfile.TemporaryDirectory(prefix=scratch_prefix()) as scratch:
                local = _local_copy(src, scratch)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        image, alpha = read_image(local, mode="keep", with_alpha=True)
                    except ImageReadError as exc:
                        raise ImageReadError(str(exc).replace(local, src)) from None
                for w in caught:
                    _LOG.warning("drn beam: %s", str(w.message).replace(local, src))
            h, w = image.shape[:2]
            self.layout.check_size(w, h)
            if alpha is not None:
                image = np.concatenate([image, alpha[..., None]], axis=-1)
        except (ValueError, OSError) as exc:  # ImageReadError is a ValueError
            yield beam.pvalue.TaggedOutput(FAILED, failure(src, exc, "decode"))
            return
        yield src, image


class _Write(beam.DoFn):
    """(path, PredictionResult) -> the output file: encoded by drn_tf.core.imageio.save_image
    with the input's metadata (ICC profile, EXIF, DPI: read_metadata, as drn
    upscale does) into a local scratch folder, copied to a hidden temporary
    name beside the output and renamed into place with FileSystems.rename."""

    def __init__(self, layout: Layout, overwrite: bool, quality: int | None = None, keep_metadata: bool = True):
        self.layout, self.overwrite = layout, overwrite
        self.quality, self.keep_metadata = quality, keep_metadata

    def _metadata(self, src: str):
        from drn_tf.core.imageio import read_metadata

        if not self.keep_metadata:
            return None
        if is_local(src):
            return read_metadata(src)
        with FileSystems.open(src) as fh:  # the header is all PIL reads
            return read_metadata(fh)

    def process(self, item):
        from drn_tf.core.imageio import DEFAULT_QUALITY, format_for, save_image

        src, result = item
        dst = self.layout.destination(src)
        sr = result.inference
        tmp = None
        if FileSystems.exists(dst) and not self.overwrite:  # appeared meanwhile
            yield beam.pvalue.TaggedOutput(FAILED, failure(src, f"output {dst} exists (pass --overwrite to replace it)",
                                                           "output"))
            return
        try:
            name = posixpath.basename(dst)
            with tempfile.TemporaryDirectory(prefix=scratch_prefix()) as scratch:
                local = os.path.join(scratch, name)
                note = save_image(sr, local, fmt=format_for(name), quality=self.quality or DEFAULT_QUALITY,
                                  metadata=self._metadata(src))
                if note:
                    _LOG.warning("drn beam: %s: %s", dst, note)
                folder = dst[: len(dst) - len(name)].rstrip("/") or "."
                tmp = FileSystems.join(folder, temporary_name(name))
                with open(local, "rb") as data, FileSystems.create(tmp) as out:
                    shutil.copyfileobj(data, out, 1 << 20)
            FileSystems.rename([tmp], [dst])
            tmp = None
        except BaseException as exc:  # any write failure is this file's failure; an interrupt goes on after
            if tmp is not None:
                try:
                    FileSystems.delete([tmp])
                except Exception:  # noqa: BLE001
                    pass
            if not isinstance(exc, Exception):
                raise
            yield beam.pvalue.TaggedOutput(FAILED, failure(src, exc, "write"))
            return
        pixels = int(sr.shape[0]) * int(sr.shape[1])
        Metrics.counter(NAMESPACE, "images").inc()
        Metrics.counter(NAMESPACE, "output_pixels").inc(pixels)
        Metrics.distribution(NAMESPACE, "output_kilopixels").update(pixels // 1000)
        yield dst


def _inference_failures(item):
    batch, exc = item[0], item[1]
    for key, _ in batch:
        yield failure(key, f"inference failed: {exc}", "inference")


def _count_failure(record):
    Metrics.counter(NAMESPACE, "failures").inc()
    return json.dumps(record, sort_keys=True)


# ---------------------------------------------------------------- assembly


def input_layout(input_pattern: str, output_dir: str, scale: int, fmt: str | None = None, request=None,
                 scales=(2, 3, 4)):
    """(pattern to match, Layout): a folder (a local one, or any path ending in
    '/') is searched recursively for images, as drn upscale does."""
    text = str(input_pattern)
    folder = text.endswith("/") or (is_local(text) and os.path.isdir(text))
    base = (text.rstrip("/") or "/") if folder else None
    layout = Layout(str(output_dir), scale, fmt, base, request, tuple(scales))
    return (FileSystems.join(base, "**") if folder else text), layout


def build_pipeline(
    p,
    input_pattern: str,
    output_dir: str,
    handler: DRNModelHandler,
    scale: int,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    quality: int | None = None,
    keep_metadata: bool = True,
):
    """Add the upscaling pipeline to ``p``; returns ``(written, failures)``
    PCollections (output paths; JSON lines, also written to
    ``OUTPUT_DIR/_failures.jsonl``). A size request is the handler's (``handler.request``)."""
    pattern, layout = input_layout(input_pattern, output_dir, scale, fmt, handler.request, handler.scales())
    planned = (
        p
        | "Match" >> fileio.MatchFiles(pattern)
        | "Plan" >> beam.ParDo(_Plan(layout))
        | "GroupByOutput" >> beam.GroupByKey()
        | "OnePerOutput" >> beam.FlatMap(_one_per_output).with_outputs(FAILED, main="files")
    )
    decoded = (
        planned.files
        | "Read" >> fileio.ReadMatches()
        | "Decode" >> beam.ParDo(_Decode(layout, overwrite, skip_existing)).with_outputs(FAILED, main="images")
    )
    results, dlq = (
        decoded.images
        | "Upscale" >> RunInference(KeyedModelHandler(handler)).with_exception_handling()
    )
    written = results | "Write" >> beam.ParDo(_Write(layout, overwrite, quality, keep_metadata)).with_outputs(FAILED, main="files")
    bad_inference = dlq.failed_inferences | "InferenceFailures" >> beam.FlatMap(_inference_failures)
    failures = (
        (planned[FAILED], decoded[FAILED], bad_inference, written[FAILED])
        | "AllFailures" >> beam.Flatten()
        | "Count" >> beam.Map(_count_failure)
    )
    _ = failures | "WriteFailures" >> beam.io.WriteToText(
        FileSystems.join(str(output_dir).rstrip("/"), FAILURES_NAME[: -len(".jsonl")]),
        file_name_suffix=".jsonl",
        shard_name_template="",
        num_shards=1,
    )
    return written.files, failures


def query_metrics(result) -> dict:
    """Committed (else attempted) values of the ``drn`` metrics of a finished run."""
    from apache_beam.metrics.metric import MetricsFilter

    out = {}
    metrics = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for kind in ("counters", "distributions"):
        for r in metrics.get(kind, []):
            value = r.committed if r.committed is not None else r.attempted
            if kind == "distributions":
                value = {"count": value.count, "sum": value.sum, "min": value.min, "max": value.max}
            out[r.key.metric.name] = out.get(r.key.metric.name, 0) + value if kind == "counters" else value
    for name in ("images", "output_pixels", "failures", "skipped", "model_loads"):
        out.setdefault(name, 0)
    return out


def check_pipeline_options(pipeline_args) -> None:
    """Parse the Beam pipeline options and resolve the runner now, before any model loads: a bad
    value (``--direct_num_workers=abc``) or an unknown runner raises :class:`BeamError` with Beam's
    own one-line reason instead of an argparse exit or a traceback later on."""
    import contextlib
    import io

    from apache_beam.options.pipeline_options import PipelineOptions

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            options = PipelineOptions(list(pipeline_args))
            options.get_all_options()
            checked = beam.Pipeline(options=options)  # resolves the runner; never run:
            shutil.rmtree(checked.local_tempdir, ignore_errors=True)  # its temporary folder goes now
    except SystemExit:  # argparse inside Beam: its message went to stderr
        lines = [line.strip() for line in err.getvalue().splitlines() if line.strip()]
        reason = lines[-1].split(" error: ", 1)[-1] if lines else "invalid pipeline options"
        raise BeamError(f"bad pipeline option: {reason}") from None
    except ValueError as exc:
        raise BeamError(f"bad pipeline option: {str(exc).strip().splitlines()[0]}") from None


def run(
    input_pattern: str,
    output_dir: str,
    *,
    model=None,
    preset=None,
    scale=None,
    pipeline_args=(),
    fmt=None,
    overwrite=False,
    skip_existing=False,
    quality=None,
    keep_metadata=True,
    tile="auto",
    tile_overlap=None,
    self_ensemble=False,
    large_model=False,
    runtime="keras",
    request=None,
) -> dict:
    """Build and run the pipeline; wait for it; returns :func:`query_metrics`
    plus ``scale`` and ``seconds``. ``pipeline_args``: Beam pipeline options
    (``--runner=...``, ``--direct_num_workers=2`` ...). ``request``: any output size
    (:class:`~drn_tf.inference.outsize.SizeRequest`) instead of the model's scale. What an interrupted
    run left is removed (:func:`sweep`) before the run and after it, however it ends; a pipeline
    stopped by Ctrl-C or SIGTERM raises KeyboardInterrupt / :class:`drn_tf.core.signals.Terminated`."""
    from apache_beam.options.pipeline_options import PipelineOptions

    from drn_tf.core import signals

    # resolve once here: fails fast (one line), converts what the runtime needs once (cached for the
    # workers) and gives the scale for the output names
    s = load_upscaling_model(model, preset, scale, runtime).scale
    if preset is None and model is None:
        preset = f"drn_x{s}"
    handler = DRNModelHandler(model, preset, s, tile=tile, tile_overlap=tile_overlap,
                              self_ensemble=self_ensemble, large_model=large_model, runtime=runtime, request=request)
    options = PipelineOptions(list(pipeline_args))
    t0 = time.perf_counter()
    sweep(output_dir)  # an earlier run's leftovers (stopped; resumed now with --skip-existing)
    p = beam.Pipeline(options=options)
    mark = signals.count()
    try:
        build_pipeline(p, input_pattern, output_dir, handler, s, fmt=fmt, overwrite=overwrite,
                       skip_existing=skip_existing, quality=quality, keep_metadata=keep_metadata)
        result = p.run()
        result.wait_until_finish()
    except Exception as exc:  # noqa: BLE001 - a runner's failure: one line for the CLI, chained for debugging
        if signals.received(mark) is not None:  # the runner wrapped the interrupt in its own error
            raise signals.exception_for(signals.received(mark)) from None
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        raise BeamError(f"the pipeline failed: {reason[:300]}") from exc
    finally:
        shutil.rmtree(p.local_tempdir, ignore_errors=True)
        sweep(output_dir, mine=True)
    out = query_metrics(result)
    out.update(scale=s, seconds=time.perf_counter() - t0)
    return out


def read_failures(output_dir) -> list[dict]:
    """The dead-letter records of the last run (``OUTPUT_DIR/_failures.jsonl``)."""
    path = FileSystems.join(str(output_dir).rstrip("/"), FAILURES_NAME)
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as fh:
        return [json.loads(line) for line in fh.read().decode("utf-8").splitlines() if line.strip()]


__all__ = [
    "DRNModelHandler",
    "FAILURES_NAME",
    "Layout",
    "SavedModelUpscaler",
    "Upscaler",
    "build_pipeline",
    "load_upscaling_model",
    "query_metrics",
    "read_failures",
    "run",
    "sweep",
]
