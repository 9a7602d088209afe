"""``drn export``: SavedModel (TF Serving), TFLite (Android), ONNX, OpenVINO and a quality/latency report.

The work is done by :mod:`drn_tf.export.tflite` and :mod:`drn_tf.export.onnx`; this module only parses arguments
(no TensorFlow import at module level, so ``drn --help`` stays fast).
"""

from __future__ import annotations

import sys


def _add_source(p):
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", metavar="FILE", help="a .keras model file")
    src.add_argument(
        "--preset",
        metavar="NAME",
        help="a preset (default drn_x2): its bundled weights if present, else a freshly initialised (untrained) model",
    )


def add_parser(sub, help_text):
    from drn_tf.export.formats import FORMATS
    from drn_tf.inference.runtimes import RUNTIMES

    p = sub.add_parser(
        "export",
        help=help_text,
        description="Export a DRN model: 'saved-model' for TF Serving, 'tflite' for Android (LiteRT), 'onnx' "
        "for ONNX Runtime, 'openvino' for OpenVINO, "
        "'report' to measure every variant (size, Set5 PSNR/SSIM, difference from Keras, latency).",
    )
    what = p.add_subparsers(dest="export_command", metavar="WHAT")

    sm = what.add_parser(
        "saved-model",
        help="SavedModel for TF Serving (DIR/<version>/)",
        description="Write DIR/<version>/ (the layout TF Serving watches) with two signatures: "
        "'serving_default' (images: uint8 [batch, height, width, 3] -> sr_images: uint8) and "
        "'upscale_bytes' (image_bytes: string [batch] of PNG/JPEG files -> sr_image_bytes: PNG files; "
        "REST clients send and receive {\"b64\": ...}).",
    )
    _add_source(sm)
    sm.add_argument("-o", "--output", required=True, metavar="DIR", help="model base folder (TF Serving's model_base_path)")
    sm.add_argument("--version", type=int, help="version number (default: one more than the highest in DIR, 1 for a new DIR)")
    sm.add_argument("--overwrite", action="store_true", help="replace DIR/<version> if it exists")
    sm.set_defaults(func=run_saved_model)

    tl = what.add_parser(
        "tflite",
        help="TFLite model for Android / LiteRT (float32, float16, dynamic-range, int8)",
        description="Convert to TFLite from a SavedModel with builtin ops only (fails if an op would need the "
        "Flex delegate). float32/float16/dynamic: float32 input and output in [0, 1]; int8: full-integer "
        "with uint8 pixel input and output. Input size is dynamic unless --input-size fixes it.",
    )
    _add_source(tl)
    tl.add_argument("--quantize", choices=("float32", "float16", "dynamic", "int8"), default="float32")
    tl.add_argument(
        "--calibration",
        metavar="DIR",
        help="int8: folder of typical images to calibrate on (default: a bundled preset's shipped ranges, "
        "assets/int8.json, no images needed; other models: the data folder's train/)",
    )
    tl.add_argument("--calibration-count", type=int, default=None, metavar="N",
                    help="int8: number of calibration crops when calibrating on images (default 24)")
    tl.add_argument(
        "--saturation-maps",
        action="store_true",
        help="int8: after the image, one output per convolution marking the 8x8-pixel blocks where its output clipped "
        "(regular high-contrast structure: stripes, text, grids), so an app can run those regions in float, as "
        "drn upscale --runtime litert-int8 does (docs/export.md); default: the image output only",
    )
    tl.add_argument(
        "--input-size",
        metavar="HxW",
        help="fixed input size [1, H, W, 3] (what Android apps ship; larger images are tiled); default: dynamic",
    )
    tl.add_argument(
        "--gpu-friendly",
        action="store_true",
        help="pixel shuffle as a fixed-weight TRANSPOSE_CONV (on the LiteRT GPU delegate's op list) instead of DEPTH_TO_SPACE",
    )
    tl.add_argument("-o", "--output", required=True, metavar="FILE", help="output .tflite file")
    tl.set_defaults(func=run_tflite)

    ox = what.add_parser(
        "onnx",
        help="ONNX model for ONNX Runtime (float32, dynamic size)",
        description="Convert with tf2onnx (what Keras's model.export(format='onnx') runs): input 'lr_image' "
        "float32 [batch, height, width, 3] in [0, 1] -> output 'sr_image' float32 [batch, height*s, width*s, 3] "
        "clipped to [0, 1]. Height, width and batch are dynamic unless --input-size fixes them. "
        'Needs pip install "drn-tf[onnx]".',
    )
    _add_source(ox)
    ox.add_argument("--input-size", metavar="HxW", help="fixed input size [1, H, W, 3]; default: dynamic")
    ox.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 17)")
    ox.add_argument("-o", "--output", required=True, metavar="FILE", help="output .onnx file")
    ox.set_defaults(func=run_onnx)

    ov = what.add_parser(
        "openvino",
        help="OpenVINO IR (.xml + .bin, float32 weights) for OpenVINO",
        description="Convert the ONNX export with openvino.convert_model and write the IR (FILE.xml and "
        "FILE.bin) with float32 weights; the compute precision (f32, or bf16 on CPUs with AVX512_BF16/AMX) "
        "is chosen when the model is compiled (INFERENCE_PRECISION_HINT; drn upscale --runtime openvino / "
        'openvino-bf16). Needs pip install "drn-tf[openvino]".',
    )
    _add_source(ov)
    ov.add_argument("--input-size", metavar="HxW", help="fixed input size [1, H, W, 3]; default: dynamic")
    ov.add_argument("-o", "--output", required=True, metavar="FILE", help="output .xml file (the .bin goes beside it)")
    ov.set_defaults(func=run_openvino)

    rp = what.add_parser(
        "report",
        help="markdown table: size, Set5 PSNR/SSIM, difference from Keras and latency of every variant",
        description="Export every variant (Keras, SavedModel, TFLite float32/float16/dynamic/int8, the "
        "GPU-friendly float32, ONNX and OpenVINO) and measure it on this machine.",
    )
    _add_source(rp)
    rp.add_argument("--data", metavar="DIR", help="data folder with benchmark/Set5 (default ../shared/data), or an image folder")
    rp.add_argument("-o", "--output", metavar="FILE", help="write the markdown here (default: print it)")
    rp.add_argument("--variants", nargs="+", metavar="NAME", help=f"subset of: {' '.join(FORMATS)}")
    rp.add_argument("--latency-size", default="256x256", metavar="HxW", help="latency input size (default 256x256)")
    rp.add_argument("--runs", type=int, default=10, help="timed runs per variant (median reported; default 10)")
    rp.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default 2)")
    rp.add_argument("--threads", type=int, help="TFLite interpreter threads (default: all CPUs)")
    rp.add_argument("--calibration", metavar="DIR", help="int8 calibration images (default: a bundled preset's "
                    "shipped ranges, no images needed; other models: the data folder's train/)")
    rp.add_argument("--keep", metavar="DIR", help="keep the exported files in DIR")
    rp.add_argument(
        "--runtimes",
        action="store_true",
        help=f"instead: the runtime table of `drn upscale --runtime` ({', '.join(RUNTIMES)}): Set5/Set14 "
        "PSNR through drn_tf.upscale and interleaved speed, with this CPU's model and flags",
    )
    rp.set_defaults(func=run_report)

    p.set_defaults(func=lambda args: _no_subcommand(p))


def _no_subcommand(parser):
    parser.print_help()
    return 2


def _load(args):
    from drn_tf.export.common import load_export_model

    resolved = load_export_model(args.model, args.preset)
    if not resolved.trained:
        print(f"drn export: warning: {resolved.description}", file=sys.stderr)
    return resolved


def _user_errors(fn):
    def wrapped(args):
        from drn_tf.cli.base import UserError
        from drn_tf.core.imageio import ImageReadError
        from drn_tf.export.common import ExportError
        from drn_tf.models.resolve import ModelError

        try:
            return fn(args)
        except (ExportError, ImageReadError, ModelError) as exc:
            raise UserError(str(exc)) from None

    return wrapped


@_user_errors
def run_saved_model(args):
    from drn_tf.export.common import (
        BYTES_INPUT,
        BYTES_OUTPUT,
        BYTES_SIGNATURE,
        SERVING_INPUT,
        SERVING_OUTPUT,
    )
    from drn_tf.export.savedmodel import export_saved_model

    resolved = _load(args)
    model, description = resolved.model, resolved.description
    target = export_saved_model(model, args.output, version=args.version, overwrite=args.overwrite)
    print(f"wrote {target} ({description}, x{model.scale if hasattr(model, 'scale') else '?'})")
    print(f"  serving_default: {SERVING_INPUT} uint8 [batch, h, w, 3] -> {SERVING_OUTPUT} uint8 [batch, h*s, w*s, 3]")
    print(f"  {BYTES_SIGNATURE}: {BYTES_INPUT} string [batch] (PNG/JPEG) -> {BYTES_OUTPUT} string [batch] (PNG)")
    return 0


@_user_errors
def run_tflite(args):
    from drn_tf.core.utils import parse_size, write_atomic
    from drn_tf.export.common import ExportError
    from drn_tf.export.int8 import CALIBRATION_COUNT
    from drn_tf.export.tflite import convert_tflite, gpu_compatibility, tflite_ops
    from drn_tf.inference.export_cache import int8_calibration
    from drn_tf.inference.litert import LiteRTRuntime

    size = parse_size(args.input_size, error=ExportError)
    if args.calibration and args.quantize != "int8":
        print("drn export: warning: --calibration is only used with --quantize int8", file=sys.stderr)
    if args.saturation_maps and args.quantize != "int8":
        print("drn export: warning: --saturation-maps is only used with --quantize int8", file=sys.stderr)
    if args.gpu_friendly and not size:
        print("drn export: warning: --gpu-friendly without --input-size: the GPU delegate needs static shapes; "
              "a dynamic-size model computes the transposed convolution's output shape at run time", file=sys.stderr)
    resolved = _load(args)
    model, description = resolved.model, resolved.description
    ranges, ranges_said = int8_calibration(model, args.calibration) if args.quantize == "int8" else (None, "")
    if args.calibration_count and ranges is not None:
        print("drn export: warning: --calibration-count is only used when calibrating on images "
              "(--calibration DIR, or a model without bundled ranges)", file=sys.stderr)
    flat = convert_tflite(
        model,
        args.quantize,
        input_size=size,
        gpu_friendly=args.gpu_friendly,
        calibration=args.calibration,
        calibration_count=args.calibration_count or CALIBRATION_COUNT,
        int8_ranges=ranges,
        saturation_maps=args.saturation_maps and args.quantize == "int8",
    )
    path = write_atomic(args.output, flat)
    runner = LiteRTRuntime(flat, num_threads=1)
    shape = [int(v) for v in runner.input["shape_signature"]]
    ok, details = gpu_compatibility(flat)
    print(f"wrote {path} ({len(flat) / 1e6:.2f} MB, {args.quantize}, {description})")
    dynamic = " (-1: set with resize_tensor_input + allocate_tensors)" if -1 in shape else ""
    io = "uint8 pixels" if args.quantize == "int8" else "float32 in [0, 1]"
    maps = len(runner.maps)
    extra = f" (first), then {maps} saturation maps saturation_00..{maps - 1:02d}" if maps else ""
    print(f"  signature serving_default: input 'lr_image' {shape}{dynamic}, output 'sr_image'{extra}; {io}")
    if ranges_said:
        print(f"  int8 ranges: {ranges_said}")
    print("  ops: " + ", ".join(f"{k} x{v}" for k, v in tflite_ops(flat).items()))
    print(f"  GPU delegate check: {'compatible' if ok else 'NOT compatible: ' + details}")
    if size:
        print(f"  fixed input: tile larger images with an overlap of {runner.overlap} LR pixels (see README)")
    return 0


@_user_errors
def run_onnx(args):
    from drn_tf.core.utils import parse_size, write_atomic
    from drn_tf.export.common import ExportError
    from drn_tf.export.onnx import ONNX_OPSET, convert_onnx, require
    from drn_tf.inference.onnx_runtime import OnnxRuntime

    size = parse_size(args.input_size, error=ExportError)
    require("tf2onnx", "onnx")
    resolved = _load(args)
    data = convert_onnx(resolved.model, size, opset=args.opset or ONNX_OPSET)
    path = write_atomic(args.output, data)
    print(f"wrote {path} ({len(data) / 1e6:.2f} MB, float32, opset {args.opset or ONNX_OPSET}, {resolved.description})")
    try:
        runner = OnnxRuntime(path, num_threads=1)
    except ExportError as exc:  # written; onnxruntime itself is not installed
        print(f"  not opened: {exc}")
        return 0
    print(f"  input '{runner.input.name}' {runner.input.shape} float32 in [0, 1] -> output '{runner.output}' "
          f"x{runner.scale}, clipped to [0, 1]")
    if size:
        print(f"  fixed input: tile larger images with an overlap of {runner.receptive_radius} LR pixels (see docs)")
    return 0


@_user_errors
def run_openvino(args):
    from pathlib import Path

    from drn_tf.core.utils import parse_size
    from drn_tf.export.common import ExportError
    from drn_tf.export.onnx import convert_openvino, require

    size = parse_size(args.input_size, error=ExportError)
    require("openvino", "openvino")
    require("tf2onnx", "openvino")
    out = Path(args.output)
    if out.suffix != ".xml":
        raise ExportError(f"-o must name the IR's .xml file (the .bin goes beside it); got {out}")
    resolved = _load(args)
    xml = convert_openvino(resolved.model, out.parent, name=out.stem, input_size=size)
    size_mb = (xml.stat().st_size + xml.with_suffix(".bin").stat().st_size) / 1e6
    print(f"wrote {xml} and {xml.with_suffix('.bin').name} ({size_mb:.2f} MB, float32 weights, {resolved.description})")
    print("  run in float32 (INFERENCE_PRECISION_HINT f32) or bfloat16 (bf16, CPUs with AVX512_BF16/AMX): "
          "drn upscale --runtime openvino / openvino-bf16")
    return 0


@_user_errors
def run_report(args):
    from drn_tf.bench.export_report import build_report
    from drn_tf.export.formats import FORMATS

    resolved = _load(args)
    model, description = resolved.model, resolved.description
    say = lambda msg: print(f"drn export report: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.runtimes:
        from drn_tf.bench.export_report import runtime_report

        markdown, _ = runtime_report(model, description, args.data, latency_size=args.latency_size, runs=args.runs,
                                     warmup=args.warmup, progress=say)
        return _write_report(args, markdown)
    markdown, _ = build_report(
        model,
        description,
        args.data,
        trained=resolved.trained,
        variants=tuple(args.variants) if args.variants else tuple(FORMATS),
        latency_size=args.latency_size,
        runs=args.runs,
        warmup=args.warmup,
        calibration=args.calibration,
        num_threads=args.threads,
        keep_dir=args.keep,
        progress=say,
    )
    return _write_report(args, markdown)


def _write_report(args, markdown: str) -> int:
    from pathlib import Path

    from drn_tf.core.utils import write_atomic

    if args.output:
        out = write_atomic(Path(args.output), markdown)
        print(f"wrote {out}")
    else:
        print(markdown)
    return 0
