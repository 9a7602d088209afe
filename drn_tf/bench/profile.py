"""Where the time goes: a ``tf.profiler`` trace of a few calls, summed per op type, and the
convolutions' share and GFLOP/s (``drn benchmark``'s profile section)."""

from __future__ import annotations

import glob
import os
import tempfile
import time
from pathlib import Path

# trace events on the executor threads that are not ops
_NOT_OPS = {"Process", "Record", "StartRegion", "StopRegion", "Run", "ExecutorDoneCallback", "MemoryAllocation",
            "MemoryDeallocation", "ParallelFor"}


def profile_ops(fn, repeats: int = 1) -> dict[str, float] | None:
    """Milliseconds per TensorFlow op type over ``repeats`` calls of ``fn``
    (from a ``tf.profiler`` trace, host plane, executor threads only), plus
    ``"__wall__"``; None if the trace cannot be read."""
    import tensorflow as tf

    try:
        from tensorflow.tsl.profiler.protobuf import xplane_pb2
    except ImportError:
        return None
    fn()
    with tempfile.TemporaryDirectory(prefix="drn-profile-") as logdir:
        try:
            tf.profiler.experimental.start(logdir)
        except Exception:  # noqa: BLE001 - another profiler running, or none built in
            return None
        try:
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            wall = time.perf_counter() - t0
        finally:
            tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not files:
            return None
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(files[0]).read_bytes())
    totals: dict[str, float] = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        meta = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for ev in line.events:
                name = meta[ev.metadata_id].name
                if ":" not in name:
                    continue
                op = name.rsplit(":", 1)[1].strip()
                if op in _NOT_OPS or not op.replace("_", "").isalnum():
                    continue
                totals[op] = totals.get(op, 0.0) + ev.duration_ps / 1e9 / repeats
    if not totals:
        return None
    totals["__wall__"] = 1e3 * wall / repeats
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))




def is_conv_op(op: str) -> bool:
    return "Conv2D" in op or op.endswith("Conv2DBackpropInput") or op.endswith("Conv2DBackpropFilter")


def summarise_profile(ops: dict[str, float] | None, flops: float) -> dict | None:
    """Conv share of the op time and the convolutions' own GFLOP/s."""
    if not ops:
        return None
    wall = ops.get("__wall__")
    items = {k: v for k, v in ops.items() if k != "__wall__"}
    total = sum(items.values())
    conv = sum(v for k, v in items.items() if is_conv_op(k))
    top = [(k, round(v, 2)) for k, v in list(items.items())[:8]]
    # On the inter-op pool two ops can run at once (e.g. the two backward
    # convolutions of a layer, or a Pad beside the convolution reading the
    # same input), sharing the intra-op threads. If the convolutions' summed
    # durations exceed the wall time they overlapped each other, and their
    # durations say nothing about kernel speed.
    overlap = bool(wall) and conv > 1.02 * wall
    return {
        "wall_ms": round(wall, 2) if wall else None,
        "op_ms": round(total, 2),
        "conv_ms": round(conv, 2),
        "other_ms": round(total - conv, 2),
        "conv_share_pct": round(100 * conv / total, 1) if total else None,
        "conv_gflops": round(flops / (conv * 1e-3) / 1e9, 1) if conv and not overlap else None,
        "overlap": overlap,
        "top_ops_ms": top,
    }
