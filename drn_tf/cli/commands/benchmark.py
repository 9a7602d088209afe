"""``drn benchmark``: latency, throughput and achieved GFLOP/s against this
machine's measured fp32 peak. The work is done by :mod:`drn_tf.bench.benchmark`."""

from __future__ import annotations

import sys


def add_parser(sub, help_text):
    p = sub.add_parser(
        "benchmark",
        help=help_text,
        description="Measure a DRN model on this machine: parameters, multiply-adds per output megapixel, the "
        "measured fp32 matmul peak, and for Keras (eager, graph, XLA), the SavedModel and every TFLite variant "
        "the median latency, output megapixels/s, achieved GFLOP/s and its share of the peak; training "
        "patches/s and GFLOP/s on TensorFlow and on JAX (in a subprocess, against its own measured peak). Prints "
        "a markdown table.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--preset",
        default="drn_x2",
        metavar="NAME",
        help="preset (default drn_x2): its bundled trained model if assets/NAME.keras exists, else a fresh one",
    )
    src.add_argument("--model", metavar="FILE", help="a .keras model file instead of a preset")
    p.add_argument("--size", default=None, metavar="HxW", help="LR input size (default 256x256; --quick: 32x32)")
    p.add_argument("--json", metavar="FILE", help="also write the full results as JSON")
    p.add_argument("--markdown", "-o", metavar="FILE", help="also write the markdown report to FILE")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run (~1 minute): small input, few repeats, small matmul and training batch",
    )
    p.add_argument(
        "--variants",
        metavar="LIST",
        help="comma-separated subset of: keras-eager, keras-graph, keras-xla, saved_model, tflite-float32, "
        "tflite-float16, tflite-dynamic, tflite-int8, train-graph, train-bf16, train-xla, train-pipeline, "
        "train-jax (default: all); 'keras', 'tflite' and 'train' select their group",
    )
    p.add_argument("--runs", type=int, metavar="N", help="timed runs per variant (default 5; --quick 3)")
    p.add_argument("--warmup", type=int, metavar="N", help="warm-up runs per variant (default 2; --quick 1)")
    p.add_argument("--matmul", type=int, metavar="N", help="matmul size for the peak (default 4096; --quick 1024)")
    p.add_argument("--train-batch", type=int, metavar="N", help="training batch (default 16; --quick 4)")
    p.add_argument("--train-patch", type=int, metavar="N", help="training LR patch side (default 48; --quick 24)")
    p.add_argument("--no-profile", action="store_true", help="skip the tf.profiler breakdown")
    p.add_argument(
        "--runtimes",
        action="store_true",
        help="instead: every runtime of drn upscale --runtime timed on one input (default 256x256; --runs rounds, "
        "default 5; --warmup, default 1), interleaved in this process: median, x keras, max difference from Keras, "
        "the CPU model and flags, what --runtime auto picks here and whether it is within 5%% of the fastest "
        "float runtime",
    )
    p.set_defaults(func=run)


def parse_variants(text):
    from drn_tf.bench.benchmark import ALL_VARIANTS
    from drn_tf.cli.base import UserError

    if not text:
        return ALL_VARIANTS
    chosen = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        group = [v for v in ALL_VARIANTS if v.split("-")[0] == item] if item in ("keras", "tflite", "train") else []
        if group:
            chosen += group
        elif item in ALL_VARIANTS:
            chosen.append(item)
        else:
            raise UserError(f"unknown variant {item!r}; choose from {', '.join(ALL_VARIANTS)} (or keras, tflite, train)")
    return tuple(v for v in ALL_VARIANTS if v in chosen)


def run(args):
    from drn_tf.cli.base import UserError
    from drn_tf.core.utils import parse_size

    variants = parse_variants(args.variants)
    for name in ("runs", "warmup", "matmul", "train_batch", "train_patch"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            raise UserError(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'warmup' else '>= 1'}, got {value}")
    size = parse_size(args.size, error=UserError) if args.size else None
    if args.model:
        from pathlib import Path

        if not Path(args.model).is_file():
            raise UserError(f"{args.model}: no such model file")
    else:
        from drn_tf.models.presets import get_preset

        try:
            get_preset(args.preset)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    if args.runtimes:
        return run_runtimes(args, size)
    from drn_tf.bench import benchmark as B

    settings = B.Settings.quick(size or (32, 32)) if args.quick else B.Settings(size=size or (256, 256))
    overrides = {"runs": args.runs, "warmup": args.warmup, "matmul_n": args.matmul, "train_batch": args.train_batch,
                 "train_patch": args.train_patch}
    for key, value in overrides.items():
        if value is not None:
            setattr(settings, key, value)
    if args.no_profile:
        settings.profile = False

    import time

    t0 = time.monotonic()

    def say(msg):
        print(f"[benchmark {time.monotonic() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        result = B.run_benchmark(args.preset, args.model, variants, settings, progress=say)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    import shlex

    argv = sys.argv[1:] if sys.argv[1:2] == ["benchmark"] else None
    result["command"] = "drn " + " ".join(shlex.quote(a) for a in argv) if argv else "drn benchmark"
    text = B.to_markdown(result)
    print(text, end="")
    if args.json:
        B.write_json(result, args.json)
        say(f"wrote {args.json}")
    if args.markdown:
        B.write_text(text, args.markdown)
        say(f"wrote {args.markdown}")
    return 0


def run_runtimes(args, size):
    """``drn benchmark --runtimes``: :mod:`drn_tf.bench.runtime_table` on the preset or model file."""
    import shlex
    import time

    from drn_tf.bench import runtime_table as T
    from drn_tf.bench.benchmark import load_benchmark_model, write_json, write_text
    from drn_tf.cli.base import UserError
    from drn_tf.inference.autoselect import model_tag
    from drn_tf.models.backend import import_backend_quietly
    from drn_tf.models.resolve import ModelError

    t0 = time.monotonic()

    def say(msg):
        print(f"[benchmark {time.monotonic() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)

    import_backend_quietly()
    try:
        resolved = load_benchmark_model(args.preset, args.model)
        result = T.run_runtime_table(resolved.model, model_tag(resolved.model), size=size or (256, 256),
                                     runs=args.runs or 5, warmup=1 if args.warmup is None else args.warmup,
                                     progress=say)
    except (OSError, ValueError, ModelError) as exc:
        raise UserError(str(exc)) from None
    argv = sys.argv[1:] if sys.argv[1:2] == ["benchmark"] else None
    command = "drn " + " ".join(shlex.quote(a) for a in argv) if argv else "drn benchmark --runtimes"
    what = f"{resolved.name}{'' if resolved.trained else ' (untrained)'}"
    text = T.table_markdown(result, what, command)
    print(text, end="")
    if args.json:
        write_json(result, args.json)
        say(f"wrote {args.json}")
    if args.markdown:
        write_text(text, args.markdown)
        say(f"wrote {args.markdown}")
    return 0
