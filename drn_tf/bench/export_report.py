"""``drn export report``: every export form (:data:`drn_tf.export.formats.FORMATS`) written, opened in
the runtime that runs it (:mod:`drn_tf.inference`) and measured: size, quality by the evaluation
protocol, difference from the Keras model, latency; and ``--runtimes``: the runtime table of
``drn upscale --runtime`` (:data:`drn_tf.inference.runtimes.RUNTIMES`), PSNR and speed of each entry."""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drn_tf.bench.benchmark import interleaved, open_written, size_bytes
from drn_tf.core.utils import parse_size
from drn_tf.export.common import ExportError, _tf, default_data_dir, model_scale
from drn_tf.export.formats import FORMATS
from drn_tf.export.int8 import CALIBRATION_COUNT
from drn_tf.export.onnx import MissingPackage
from drn_tf.export.tflite import gpu_compatibility, tflite_ops
from drn_tf.inference.export_cache import int8_calibration
from drn_tf.inference.runtimes import RUNTIMES, _versions, runtime_model

# ---------------------------------------------------------------- report


@dataclass
class VariantResult:
    name: str
    description: str
    size_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    max_diff: float | None = None
    mean_diff: float | None = None
    latency_ms: float | None = None
    ops: dict = field(default_factory=dict)
    gpu: tuple | None = None
    extra_psnr: dict = field(default_factory=dict)  # more benchmark sets (Set14): name -> PSNR
    note: str = ""


def interleaved_latency(fns: dict, runs: int = 10, warmup: int = 2, all_runs: bool = False) -> dict:
    """Median seconds per call of each function, timed in round-robin order
    (:func:`drn_tf.bench.benchmark.interleaved`): interleaving spreads load changes on a shared machine
    over all the variants instead of penalising whichever ran during a busy spell.
    ``all_runs``: the list of every timed run's seconds instead of the median.
    """
    times = interleaved(fns, runs, warmup)
    if all_runs:
        return times
    return {name: statistics.median(values) for name, values in times.items()}


def _set5_pairs(data_dir: Path, scale: int, limit: int | None = None, set_name: str = "Set5"):
    """(folder, [(name, LR, HR)]) of ``<data_dir>/benchmark/<set_name>`` (or of ``data_dir`` itself, a folder
    of images) by the evaluation protocol (:func:`drn_tf.core.protocol.read_benchmark`: a grey file stays one
    channel, as ``drn evaluate`` scores it); ``limit``: the first images only."""
    from drn_tf.core.protocol import read_benchmark

    named = data_dir / "benchmark" / set_name
    folder = named if named.is_dir() else data_dir
    try:
        bench = read_benchmark(folder, scale, limit=limit)
    except FileNotFoundError:
        raise ExportError(f"no benchmark images in {folder} (pass --data with benchmark/{set_name})") from None
    return folder, [(path.name, lr, hr) for path, lr, hr in zip(bench.paths, bench.lrs, bench.hrs)]


def _protocol_uint8(sr: np.ndarray, grey: bool) -> np.ndarray:
    """A runtime's RGB output (float in [0, 255], or uint8) as the protocol scores it
    (:func:`drn_tf.core.protocol.model_output`: for a grey LR the three channels averaged back to one, as
    ``drn evaluate`` does; rounded to uint8)."""
    from drn_tf.core.protocol import model_output

    return model_output(sr / 255.0, grey)


def _protocol_sr(upscale, lr: np.ndarray) -> np.ndarray:
    """uint8 SR of ``upscale`` (an RGB uint8 runtime, see :func:`_protocol_uint8`) for a protocol LR (a grey
    one given to it as RGB: :func:`drn_tf.core.protocol.as_rgb`)."""
    from drn_tf.core.protocol import as_rgb

    return _protocol_uint8(upscale(as_rgb(lr)), lr.shape[-1] == 1)


@dataclass
class _ReportRun:
    """What every form's measurement shares."""

    model: object
    out_dir: Path  # where the exported files go
    lat_float: np.ndarray  # the latency input, float32 in [0, 1]
    threads: int
    options: dict  # for the writers: calibration, calibration_count, workdir, int8_ranges


def _measure_form(run: _ReportRun, r: VariantResult):
    """Write the form ``r.name`` into ``run.out_dir`` (its size, and a TFLite file's operators, into ``r``) and open
    it in its runtime; returns ``(upscale, timer)``: ``upscale(lr)`` the SR of one RGB uint8 LR (float in [0, 255],
    clipped to [0, 1] first; uint8 runtimes give their integers), ``timer()`` one ``run_batch`` of the latency
    input."""
    path = FORMATS[r.name].write(run.model, run.out_dir, **run.options)
    r.size_bytes = size_bytes(path)
    if path.suffix == ".tflite":
        flat = path.read_bytes()
        r.ops, r.gpu = tflite_ops(flat), gpu_compatibility(flat)
    if path.suffix == ".keras":
        r.note = "output clipped to [0, 1] by the harness"
    runtime = open_written(path, run.model, run.threads)
    return (lambda lr: np.clip(runtime.run_batch(lr[None])[0], 0.0, 1.0) * 255.0), (
        lambda: runtime.run_batch(run.lat_float))


def build_report(
    model,
    description: str,
    data_dir=None,
    *,
    trained: bool = True,
    variants=tuple(FORMATS),
    latency_size=(256, 256),
    runs: int = 10,
    warmup: int = 2,
    calibration=None,
    calibration_count: int = CALIBRATION_COUNT,
    num_threads: int | None = None,
    workdir=None,
    keep_dir=None,
    limit_images: int | None = None,
    extra_sets=("Set14",),
    progress=None,
) -> tuple[str, list[VariantResult]]:
    """Export every variant, measure it, and return ``(markdown, results)``.

    Per variant: file size, Set5 Y-PSNR/SSIM by the project's protocol
    (LR = MATLAB bicubic of the modcropped HR; SR clipped and rounded),
    max/mean absolute difference from the Keras model's clipped output in
    8-bit levels over the Set5 SR images, and the median latency of one
    ``latency_size`` input after warm-up on this machine. ``extra_sets``:
    benchmark sets (``<data>/benchmark/<name>``, skipped if absent) whose
    PSNR is reported too. ``trained=False`` (a freshly initialised model,
    :attr:`drn_tf.models.resolve.Resolved.trained`) adds a note that its
    PSNR/SSIM say nothing about the method. The int8 variant takes its
    activation ranges as ``drn export tflite --quantize int8`` does
    (:func:`drn_tf.inference.export_cache.int8_calibration`: a bundled
    preset's shipped ranges unless ``calibration`` is given), and its row
    says which.
    """
    import keras

    from drn_tf.core.metrics import psnr_y, ssim_y
    from drn_tf.core.protocol import as_rgb
    from drn_tf.inference.upscale import predict_image

    tf = _tf()
    say = progress or (lambda msg: None)
    unknown = [v for v in variants if v not in FORMATS]
    if unknown:
        raise ExportError(f"unknown report variant(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if "keras" not in variants:
        variants = ("keras", *variants)
    scale = model_scale(model)
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    folder, pairs = _set5_pairs(data_dir, scale, limit_images)
    extra = {}
    for set_name in extra_sets or ():
        if (data_dir / "benchmark" / set_name).is_dir() and folder == data_dir / "benchmark" / "Set5":
            extra[set_name] = _set5_pairs(data_dir, scale, limit_images, set_name)[1]
    threads = num_threads or os.cpu_count()
    lh, lw = parse_size(latency_size, error=ExportError)
    lat_uint8 = np.random.default_rng(0).integers(0, 256, size=(1, lh, lw, 3), dtype=np.uint8)
    lat_float = lat_uint8.astype(np.float32) / 255.0

    reference = {}
    for name, lr, _ in pairs:
        reference[name] = np.clip(predict_image(model, as_rgb(lr)), 0.0, 1.0) * 255.0

    int8_ranges, int8_said = int8_calibration(model, calibration) if "tflite-int8" in variants else (None, "")
    results: list[VariantResult] = []
    timers = {}
    tmp_ctx = tempfile.TemporaryDirectory(prefix="drn-report-", dir=workdir)
    out_dir = Path(keep_dir) if keep_dir else Path(tmp_ctx.name)
    out_dir.mkdir(parents=True, exist_ok=True)

    def score(result: VariantResult, upscale):
        psnrs, ssims, maxd, sumd, count = [], [], 0.0, 0.0, 0
        for name, lr, hr in pairs:
            sr = upscale(as_rgb(lr))  # float in [0, 255] (uint8 variants: their integers)
            sr8 = _protocol_uint8(sr, lr.shape[-1] == 1)
            psnrs.append(psnr_y(sr8, hr, scale))
            ssims.append(ssim_y(sr8, hr, scale))
            diff = np.abs(sr.astype(np.float64) - reference[name])
            maxd = max(maxd, float(diff.max()))
            sumd += float(diff.sum())
            count += diff.size
        result.psnr, result.ssim = float(np.mean(psnrs)), float(np.mean(ssims))
        for set_name, set_pairs in extra.items():
            values = []
            for _, lr, hr in set_pairs:
                values.append(psnr_y(_protocol_sr(upscale, lr), hr, scale))
            result.extra_psnr[set_name] = float(np.mean(values))
        result.max_diff, result.mean_diff = maxd, sumd / count

    try:
        run = _ReportRun(model, out_dir, lat_float, threads,
                         dict(calibration=calibration, calibration_count=calibration_count, workdir=workdir,
                              int8_ranges=int8_ranges))
        for variant in variants:
            say(f"{variant} ...")
            r = VariantResult(variant, _variant_description(variant, int8_said))
            try:
                upscale, timers[variant] = _measure_form(run, r)
            except MissingPackage as exc:  # an optional runtime (ONNX, OpenVINO) not installed: left out, said why
                say(f"{variant}: left out ({exc})")
                continue
            score(r, upscale)
            results.append(r)
            say(f"{variant}: {r.psnr:.3f} dB" + "".join(f", {k} {v:.3f} dB" for k, v in r.extra_psnr.items()))
        say(f"latency: {len(timers)} variants x ({warmup} warm-up + {runs} timed runs), interleaved ...")
        latencies = interleaved_latency(timers, runs, warmup)
        for r in results:
            r.latency_ms = 1e3 * latencies[r.name]
    finally:
        tmp_ctx.cleanup()
    markdown = _report_markdown(
        results, description, trained, folder, scale, (lh, lw), runs, warmup, threads, len(pairs), keras.__version__,
        tf,
    )
    return markdown, results


def _variant_description(variant: str, int8_said: str) -> str:
    """The "what" of a variant's row: its form's description; the int8 one's also says where its activation
    ranges came from (``int8_said``, the words of :func:`~drn_tf.inference.export_cache.int8_calibration`)."""
    description = FORMATS[variant].description
    return f"{description}; int8 ranges {int8_said}" if variant == "tflite-int8" and int8_said else description


def _machine() -> str:
    from drn_tf.core.utils import cpu_model

    cpu = cpu_model()
    try:
        load = ", load average {:.1f} when the report finished".format(os.getloadavg()[0])
    except OSError:
        load = ""
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}{load}"


def _report_markdown(results, description, trained, folder, scale, lat_size, runs, warmup, threads, n_images, keras_version, tf):
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - version lookup only
        litert = "?"
    lines = [
        "# Export report",
        "",
        f"Model: {description}, x{scale}. Generated by `drn export report` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
    ]
    if not trained:
        lines += [
            "**The model is untrained**: its PSNR/SSIM say nothing about the method; only sizes, latencies and "
            "the differences between variants are meaningful. Rerun with the trained model "
            "(`drn export report --model assets/drn_x2.keras -o assets/export_report.md`).",
            "",
        ]
    lines += [
        f"Machine: {_machine()}; TensorFlow {tf.__version__}, Keras {keras_version}, LiteRT (ai-edge-litert) "
        f"{litert}; TFLite run with {threads} threads (XNNPACK, the interpreter's default).",
        "",
        f"Quality: {folder} ({n_images} images), the project's protocol (HR modcropped, LR by MATLAB bicubic, "
        "SR clipped and rounded, Y channel, scale pixels shaved). Difference: absolute difference from the "
        "Keras model's output clipped to [0, 1], in 8-bit levels (1 = 1/255), over all SR pixels of the set; "
        "uint8 variants are compared as the integers they return (as float: within 1e-4 of them). "
        + "".join(f"{k} PSNR: the same protocol on benchmark/{k}. " for k in results[0].extra_psnr)
        + "Latency: median of "
        f"{runs} runs after {warmup} warm-up runs on one {lat_size[0]}x{lat_size[1]} input (x{scale} output), "
        "one `run_batch` of the variant's runtime (Keras: `predict_on_batch`; SavedModel: the `serving_default` "
        "signature; TFLite: `invoke`; each with its pixel conversions), the variants timed in turn, round after "
        "round, so load changes hit them alike.",
        "",
        "| variant | what | size | PSNR (dB) | SSIM | max diff | mean diff | latency (ms) |"
        + "".join(f" {k} PSNR (dB) |" for k in results[0].extra_psnr),
        "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(results[0].extra_psnr),
    ]
    for r in results:
        size = "-" if r.size_bytes is None else f"{r.size_bytes / 1e6:.2f} MB"
        lines.append(
            f"| {r.name} | {r.description} | {size} | {r.psnr:.3f} | {r.ssim:.4f} | {r.max_diff:.2f} | "
            f"{r.mean_diff:.4f} | {r.latency_ms:.1f} |" + "".join(f" {v:.3f} |" for v in r.extra_psnr.values())
        )
    noted = [r for r in results if r.note]
    if noted:
        lines += ["", "Notes:", "", *(f"- {r.name}: {r.note}" for r in noted)]
    keras = results[0]
    sets = ", ".join([folder.name, *keras.extra_psnr])
    lines += ["", f"PSNR change from the Keras model ({sets}):", ""]
    for r in results[1:]:
        change = [f"{r.psnr - keras.psnr:+.3f}"] + [f"{v - keras.extra_psnr[k]:+.3f}" for k, v in r.extra_psnr.items()]
        lines.append(f"- {r.name}: {' / '.join(change)} dB")
    tflite = [r for r in results if r.ops]
    if tflite:
        lines += [
            "",
            "## TFLite operators",
            "",
            "All builtin (no Flex/custom op: the export refuses otherwise). GPU: TensorFlow's GPU-delegate "
            "compatibility checker (`tf.lite.experimental.Analyzer`, necessary but not sufficient).",
            "",
            "| variant | operators (count) | GPU delegate check |",
            "|---|---|---|",
        ]
        for r in tflite:
            ops = ", ".join(f"{k} ({v})" for k, v in r.ops.items())
            gpu = "compatible" if r.gpu and r.gpu[0] else f"not compatible: {r.gpu[1] if r.gpu else '?'}"
            lines.append(f"| {r.name} | {ops} | {gpu} |")
    lines.append("")
    return "\n".join(lines)

# ---------------------------------------------------------------- the runtime table


REPORTED_PACKAGES = ("tensorflow", "ai-edge-litert", "onnxruntime", "tf2onnx", "openvino")


def runtime_report(model, description: str, data_dir=None, *, sets=("Set5", "Set14"), latency_size=(256, 256),
                   runs: int = 6, warmup: int = 1, cache_dir=None, progress=None) -> tuple[str, list[dict]]:
    """Markdown table: PSNR on ``sets`` and speed of every runtime, with the CPU it ran on.

    PSNR: ``drn_tf.upscale(lr, model=..., runtime=...)`` (the whole main-job
    path) on each set by the project's protocol. Speed: the centre ``latency_size`` of the sample photo
    (:func:`drn_tf.bench.runtime_table.sample_input`) through each runtime's ``run_batch``
    (Keras: ``predict_on_batch``; LiteRT: ``invoke`` plus the uint8/float
    conversions), the runtimes timed in turn round after round
    (:func:`interleaved_latency`), median and best.
    """
    from drn_tf.bench.runtime_table import sample_input
    from drn_tf.core.metrics import psnr_y
    from drn_tf.core.utils import cpu_flags, cpu_model
    from drn_tf.inference.upscale import upscale

    say = progress or (lambda msg: None)
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    scale = model_scale(model)
    pairs = {}
    for name in sets:
        folder = data_dir / "benchmark" / name
        if not folder.is_dir():
            raise ExportError(f"{folder} does not exist (pass --data with benchmark/{name})")
        pairs[name] = _set5_pairs(data_dir, scale, set_name=name)[1]
    from drn_tf.models.resolve import ModelError

    models, skipped = {}, {}
    for name in RUNTIMES:
        say(f"{name}: preparing ...")
        try:
            models[name] = runtime_model(model, name, cache_dir=cache_dir, progress=say)
        except ModelError as exc:  # not on this CPU, or its package is not installed: said under the table
            skipped[name] = str(exc)
            say(f"{name}: skipped ({exc})")
    names = list(models)
    rows = []
    for name in names:
        row = {"runtime": name}
        for set_name, set_pairs in pairs.items():
            row[set_name] = float(np.mean([psnr_y(upscale(lr, model=models[name]), hr, scale)
                                           for _, lr, hr in set_pairs]))
        say(f"{name}: " + ", ".join(f"{k} {row[k]:.3f} dB" for k in pairs))
        rows.append(row)
    lh, lw = parse_size(latency_size, error=ExportError)
    # a photo, not noise: on noise int8 activations clip everywhere and litert-int8 reruns it all in float
    batch = sample_input((lh, lw))
    say(f"latency: {len(names)} runtimes x ({warmup} warm-up + {runs} timed runs), interleaved ...")
    fns = {name: (lambda m=models[name]: m.run_batch(batch)) for name in names}
    times = interleaved_latency(fns, runs, warmup, all_runs=True)
    keras_median = statistics.median(times["keras"])
    keras_best = min(times["keras"])
    for row in rows:
        t = times[row["runtime"]]
        row["median_ms"], row["best_ms"] = 1e3 * statistics.median(t), 1e3 * min(t)
        row["speedup"] = keras_median / statistics.median(t)
        row["speedup_best"] = keras_best / min(t)
    flags = cpu_flags()
    from drn_tf.bench.runtime_table import auto_choice
    from drn_tf.inference.autoselect import AUTO_RULE, model_tag

    auto = auto_choice(model_tag(model))
    auto_how = {"cached": "measured on this machine and cached", "gpu": "a GPU is visible",
                "rule": f"the CPU-flag rule: {AUTO_RULE}"}.get(auto.how, auto.how)
    try:
        load = "; load average {:.1f}".format(os.getloadavg()[0])
    except OSError:
        load = ""
    lines = [
        f"Runtimes of {description}, x{scale}: `drn export report --runtimes`, {time.strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"CPU: {cpu_model()}, {os.cpu_count()} logical CPUs, flags {', '.join(flags) or 'none of note'}; "
        f"{platform.system()} {platform.release()}{load}. `auto` picks **{auto.runtime}** here "
        f"({auto_how}). Versions: {_versions(REPORTED_PACKAGES)}.",
        "",
        f"PSNR: `drn_tf.upscale(..., runtime=...)` on {', '.join(pairs)} (Y channel, {scale} pixels shaved). "
        f"Speed: the centre {lh}x{lw} of the sample photo (assets/sample.jpg), median (best) of {runs} runs after {warmup} warm-up, the runtimes "
        "timed in turn round after round; speed-up against keras in the same run.",
        "",
        "| runtime | file (written by) | " + " | ".join(f"{k} PSNR (dB)" for k in pairs)
        + " | ms (median) | ms (best) | x keras (median) | x keras (best) |",
        "|---|---|" + "---:|" * (len(pairs) + 4),
    ]
    for row in rows:
        lines.append(
            f"| {row['runtime']} | `{RUNTIMES[row['runtime']].export}` | " + " | ".join(f"{row[k]:.3f}" for k in pairs)
            + f" | {row['median_ms']:.0f} | {row['best_ms']:.0f} | {row['speedup']:.2f} | {row['speedup_best']:.2f} |"
        )
    lines += [""] + [f"Not run: {name}: {why}" for name, why in skipped.items()] + ([""] if skipped else [])
    return "\n".join(lines), rows
