"""``drn serve``: serve models over HTTP with KServe's Python model server (``pip install "drn-tf[serve]"``).

Arguments are checked and kserve imported before TensorFlow starts and the models load
(``NEEDS_BACKEND = False``), so a mistake is reported in a fraction of a second.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from drn_tf.inference.runtimes import AUTO, runtime_names, runtimes_help
from drn_tf.serve.work import Limits

LIMITS = Limits()  # the defaults

NEEDS_BACKEND = False

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DESCRIPTION = """\
Serve DRN models over HTTP through KServe's model server. Each MODEL (a preset with a bundled trained
model, or a .keras file; NAME=MODEL names it) is served as NAME: the preset's name, or the file's
stem. With several --runtime values every model is served once per runtime, as NAME_RUNTIME.

Endpoints (the same tiling and outputs as drn upscale; a PNG answer is drn upscale's PNG file):
  POST /v1/models/NAME:predict   TF Serving's REST bodies for the SavedModel's signatures:
       {"instances": [[[[r,g,b],...],...]]}                       uint8 pixels (serving_default)
       {"signature_name": "upscale_bytes", "instances": [{"b64": "..."}]}   image files -> PNG files
  POST /v2/models/NAME/infer     Open Inference Protocol: UINT8 [h,w,3] or [n,h,w,3] -> "sr_images";
                                 BYTES [n] (base64 image files) -> "sr_image_bytes" (base64 PNG files)
  GET  /                         a page to try it in a browser
  GET  /v2/health/live, /v2/health/ready, /v1/models/NAME     health and readiness
  GET  /metrics                  Prometheus metrics
  gRPC (with --grpc-port)        Open Inference Protocol's ModelInfer, the same tensors as V2 REST

Refused with a JSON {"error": ...}: bodies over --max-body-mb (413, from Content-Length before reading),
images over --max-pixels (413, from the image header before decoding), more than --max-batch images,
malformed bodies (400), unknown models (404), requests over --timeout (504).
Slow clients are bounded by --timeout too: headers or a body not received in time get 408 and the
connection is closed; a client that hangs up (or cancels its gRPC call) stops its work at the next tile.
SIGTERM or Ctrl-C: no new connections, the requests in flight finish (up to --grace seconds), exit 0."""


def add_parser(sub, help_text):
    import argparse

    p = sub.add_parser("serve", help=help_text, description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL", default=["drn_x2"],
                   help="presets or .keras files, optionally NAME=MODEL (default: drn_x2)")
    p.add_argument("--runtime", nargs="+", choices=runtime_names(), default=[AUTO], metavar="RUNTIME",
                   help=f"what runs the network, one or more of {', '.join(runtime_names())} ({runtimes_help()}). "
                   "Default auto: the faster float runtime on this CPU")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--grpc-port", type=int, metavar="PORT",
                   help="also serve the V2 gRPC API (Open Inference Protocol) on this port (default: no gRPC)")
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="requests worked on at once (default 2): decoding and encoding overlap, the model "
                   "itself runs one pass at a time on all --threads")
    p.add_argument("--threads", type=int, metavar="N",
                   help="TensorFlow intra-op threads (default: the CPUs this process may use)")
    p.add_argument("--max-pixels", type=int, default=LIMITS.max_pixels, metavar="N",
                   help=f"largest input image in pixels (default {LIMITS.max_pixels})")
    p.add_argument("--max-body-mb", type=float, default=32.0, metavar="MB", help="largest request body (default 32 MB)")
    p.add_argument("--max-batch", type=int, default=LIMITS.max_batch, metavar="N",
                   help=f"most images in one request (default {LIMITS.max_batch})")
    p.add_argument("--timeout", type=float, default=LIMITS.timeout, metavar="S",
                   help=f"seconds a request may take from arrival, queueing included (default {LIMITS.timeout:g}); then 504; "
                        "also the time a client gets to send its headers and body (then 408)")
    p.add_argument("--grace", type=int, default=30, metavar="S",
                   help="on SIGTERM, seconds the requests in flight get to finish (default 30)")
    p.add_argument("--no-ui", action="store_true", help="no page at /")
    p.add_argument("--kind", choices=("auto", "clean", "photo"), default="auto",
                   help="for presets: auto (default) also loads the preset's photo variant when it is bundled and "
                   "answers encoded JPEG requests with it (fine-tuned for JPEG inputs); clean or photo: that "
                   "variant only. Pixel-array requests and model files use the model as it is")
    p.set_defaults(func=run)


def _is_file(spec: str) -> bool:
    return spec.endswith(".keras") or Path(spec).exists()


def model_specs(values: list, runtimes: list) -> list:
    """``[(name, model spec, runtime)]`` for the MODEL arguments; ValueError for a bad or repeated name."""
    out, names = [], set()
    for value in values:
        name, _, spec = value.rpartition("=")
        spec = spec or value
        if not name:
            name = Path(spec).stem if _is_file(spec) else spec
        if _is_file(spec) and not Path(spec).is_file():
            raise ValueError(f"{spec}: model file not found")
        for runtime in runtimes:
            full = name if len(runtimes) == 1 else f"{name}_{runtime.replace('-', '_')}"
            if not _NAME.match(full):
                raise ValueError(f"model name {full!r}: letters, digits, '_', '.', '-' only (NAME=MODEL names it)")
            if full in names:
                raise ValueError(f"two models would be served as {full!r}; name them with NAME=MODEL")
            names.add(full)
            out.append((full, spec, runtime))
    return out


def _check(args, error) -> list:
    for option, value, low in (("--workers", args.workers, 1), ("--max-pixels", args.max_pixels, 4),
                               ("--max-batch", args.max_batch, 1), ("--grace", args.grace, 0),
                               ("--threads", args.threads or 1, 1)):
        if value < low:
            raise error(f"{option} must be at least {low}, got {value}")
    for option, value in (("--port", args.port), ("--grpc-port", args.grpc_port)):
        if value is not None and not 1 <= value <= 65535:
            raise error(f"{option} must be between 1 and 65535, got {value}")
    if args.grpc_port == args.port:
        raise error("--grpc-port must differ from --port")
    if args.timeout <= 0 or args.max_body_mb <= 0:
        raise error("--timeout and --max-body-mb must be positive")
    if len(set(args.runtime)) != len(args.runtime):
        raise error("--runtime: each runtime once")
    try:
        return model_specs(args.models, args.runtime)
    except ValueError as exc:
        raise error(str(exc)) from None


def check_address(host: str, port: int) -> None:
    """ValueError when ``host:port`` cannot be listened on (taken, or not this machine's), found before
    the models load."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(infos[0][4])
    except OSError as exc:
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _photo_variant(preset: str, kind: str, runtime: str, limits):
    """The Upscaler of ``preset``'s photo variant for ``--kind auto``, when it is bundled (and not the preset)."""
    from drn_tf.inference.runtimes import runtime_model
    from drn_tf.models.presets import get_preset
    from drn_tf.models.resolve import preset_for_kind, resolve
    from drn_tf.serve.work import Upscaler

    if kind != "auto" or get_preset(preset)["kind"] == "photo":
        return None
    name, _ = preset_for_kind(preset, "photo")
    if get_preset(name)["kind"] != "photo":  # no photo model of this scale is bundled
        return None
    upscaler = Upscaler(runtime_model(resolve(None, name).model, runtime), limits)
    upscaler.preset = name
    return upscaler


def _load(specs, limits, pool, kind: str = "auto"):
    """The :class:`~drn_tf.serve.model.DrnModel` of each spec (each model file or preset loaded once); a preset
    is replaced by its ``kind`` variant (``clean``/``photo``), or (``auto``) serves JPEG bytes with its photo one."""
    from drn_tf.inference.runtimes import resolve_runtime, runtime_model
    from drn_tf.models.resolve import ModelError, preset_for_kind, resolve
    from drn_tf.serve.model import DrnModel
    from drn_tf.serve.work import Upscaler

    loaded, models = {}, []
    for name, spec, runtime in specs:
        is_file = _is_file(spec)
        if not is_file and kind != "auto":
            try:
                spec, note = preset_for_kind(spec, kind)
            except ValueError as exc:
                raise ModelError(str(exc)) from None
            if note:
                print(f"drn serve: {note}", file=sys.stderr)
        if spec not in loaded:
            loaded[spec] = resolve(spec if is_file else None, None if is_file else spec).model
        rt = runtime_model(loaded[spec], runtime, progress=lambda m: print(f"drn serve: {m}", file=sys.stderr))
        photo = None if is_file else _photo_variant(spec, kind, runtime, limits)
        models.append(DrnModel(name, Upscaler(rt, limits), pool, runtime=resolve_runtime(runtime), source=spec,
                               photo=photo))
        print(f"drn serve: {name}: {spec}, x{rt.scale}, runtime {rt.name}"
              + (f"; JPEG requests: {photo.preset}" if photo else ""), file=sys.stderr)
    return models


def run(args):
    from concurrent.futures import ThreadPoolExecutor

    from drn_tf.cli.base import UserError
    from drn_tf.serve.work import Limits, thread_count

    specs = _check(args, UserError)
    try:
        for port in (args.port, args.grpc_port):
            if port is not None:
                check_address(args.host, port)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        from drn_tf.serve.server import import_kserve, serve

        import_kserve()
    except ImportError as exc:
        raise UserError(f"drn serve needs kserve ({exc}); pip install \"drn-tf[serve]\"") from None
    from drn_tf.models.backend import import_backend_quietly
    from drn_tf.models.resolve import ModelError

    os.environ["TF_NUM_INTRAOP_THREADS"] = str(args.threads or thread_count())  # read when TensorFlow starts
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"  # one pass at a time (the model's lock)
    import_backend_quietly()
    limits = Limits(max_pixels=args.max_pixels, max_batch=args.max_batch, timeout=args.timeout)
    pool = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="drn-serve")
    try:
        models = _load(specs, limits, pool, args.kind)
    except ModelError as exc:
        raise UserError(str(exc)) from None
    print(f"drn serve: listening on http://{args.host}:{args.port} ({', '.join(m.name for m in models)})",
          file=sys.stderr, flush=True)
    try:
        return serve(models, host=args.host, port=args.port, body_limit=int(args.max_body_mb * 1e6),
                     grace=args.grace, grpc_port=args.grpc_port, ui=not args.no_ui)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
