"""``drn benchmark --runtimes``: every runtime of ``drn upscale --runtime`` (:data:`drn_tf.inference.runtimes.RUNTIMES`)
timed on this machine, in one process, round after round, beside what ``--runtime auto`` picks here.

Per runtime: the median (and fastest) seconds of one ``run_batch`` on one ``H x W`` input (:func:`sample_input`:
the centre of ``assets/sample.jpg``, a photograph, float32 in [0, 1]), its speed against Keras (``x keras`` = Keras median / its median), and the largest
absolute difference of its output from the Keras model's on that input, in 8-bit levels (outputs clipped to
[0, 1]; 1 level = 1/255). A runtime that cannot run here (its package missing, bf16 on a CPU without it) is
listed under the table with the reason.

``auto``: the choice ``--runtime auto`` makes on this machine for this model
(:func:`drn_tf.inference.autoselect.cached_choice`: the cached measurement, else the CPU-flag rule; the
Keras model where a GPU is visible), and whether its median in this run is within :data:`AUTO_TOLERANCE` of
the fastest float runtime's (the ones ``auto`` chooses among).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from drn_tf.bench.machine import cpu_count, interleaved, load_average, quiet

AUTO_TOLERANCE = 0.05  # auto's median may be this much slower than the fastest float runtime's


@dataclass
class RuntimeRow:
    name: str
    description: str
    samples_s: list = field(default_factory=list)
    median_ms: float | None = None
    best_ms: float | None = None
    x_keras: float | None = None
    max_diff_levels: float | None = None


def sample_input(size) -> np.ndarray:
    """``(1, h, w, 3)`` float32 in [0, 1]: the centre of ``assets/sample.jpg`` (tiled by reflection where the
    photograph is smaller), else a fixed random image where the file is missing."""
    from drn_tf.core.utils import assets_dir

    h, w = size
    try:
        from drn_tf.core.imageio import read_image

        img = read_image(assets_dir() / "sample.jpg")[..., :3]
    except Exception:  # noqa: BLE001 - no sample: noise (a harsher input for the differences)
        return np.random.default_rng(0).random((1, h, w, 3), dtype=np.float32)
    ph, pw = max(0, h - img.shape[0]), max(0, w - img.shape[1])
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return (img[None, top:top + h, left:left + w].astype(np.float32) / 255.0).copy()


def build_runtimes(model, names, cache_dir=None, progress=None) -> tuple[dict, dict]:
    """``({name: runtime}, {name: why not})`` for the runtimes ``names`` built from the Keras ``model``."""
    from drn_tf.inference.runtimes import runtime_model
    from drn_tf.models.resolve import ModelError

    built, skipped = {}, {}
    for name in names:
        try:
            with quiet():
                built[name] = runtime_model(model, name, cache_dir=cache_dir, progress=progress)
        except ModelError as exc:
            skipped[name] = str(exc)
    return built, skipped


def auto_choice(tag: str):
    """What ``--runtime auto`` runs here for the model ``tag``: a :class:`drn_tf.inference.autoselect.Choice`,
    measuring nothing (a cached measurement, else the rule; ``gpu`` where a GPU is visible)."""
    from drn_tf.inference import autoselect, devices

    if devices.gpu_visible():
        return autoselect.Choice("keras", "gpu")
    if (os.environ.get(autoselect.ENV) or "").lower() == "rule":
        return autoselect.Choice(autoselect.rule_runtime(), "rule", note=f"{autoselect.ENV}=rule")
    return autoselect.cached_choice(tag) or autoselect.Choice(autoselect.rule_runtime(), "rule",
                                                              note="not measured yet on this machine")


def auto_verdict(rows: dict, auto: str, tolerance: float = AUTO_TOLERANCE) -> dict:
    """How ``auto``'s runtime did in this run against the fastest float candidate that ran:
    ``{"fastest", "ratio", "within"}`` (``ratio``: auto's median / the fastest's; None when auto did not run)."""
    from drn_tf.inference.autoselect import CANDIDATES

    floats = {n: r.median_ms for n, r in rows.items() if n in CANDIDATES["float32"] and r.median_ms}
    if not floats:
        return {"fastest": None, "ratio": None, "within": None}
    fastest = min(floats, key=floats.get)
    if auto not in floats:
        return {"fastest": fastest, "ratio": None, "within": None}
    ratio = floats[auto] / floats[fastest]
    return {"fastest": fastest, "ratio": ratio, "within": ratio <= 1 + tolerance}


def run_runtime_table(model, tag: str, size=(256, 256), runs: int = 5, warmup: int = 1, cache_dir=None,
                      progress=None, names=None, timer=None) -> dict:
    """Time every runtime (``names``: a subset of :data:`RUNTIMES`) on ``model``; the result dict of
    :func:`table_markdown`. ``timer``: replaces the interleaved timing (tests): ``timer(fns, runs, warmup)``
    -> ``{name: [seconds]}``."""
    from drn_tf.core.utils import cpu_flags, cpu_model
    from drn_tf.inference.autoselect import versions
    from drn_tf.inference.runtimes import RUNTIMES

    say = progress or (lambda msg: None)
    names = list(names or RUNTIMES)
    load_start = load_average()
    say(f"building {len(names)} runtimes (conversions are cached) ...")
    built, skipped = build_runtimes(model, names, cache_dir=cache_dir, progress=say)
    if "keras" not in built:
        raise ValueError(f"the Keras model does not run here: {skipped.get('keras', 'not asked for')}")
    h, w = size
    x = sample_input((h, w))
    reference = np.clip(built["keras"].run_batch(x), 0, 1)
    rows = {}
    for name, rt in built.items():
        out = np.clip(np.asarray(rt.run_batch(x), dtype=np.float32), 0, 1)
        rows[name] = RuntimeRow(name, RUNTIMES[name].description,
                                max_diff_levels=float(np.abs(out - reference).max() * 255))
    say(f"timing {len(built)} runtimes on one {h}x{w} input: {warmup} warm-up + {runs} rounds, interleaved ...")
    fns = {name: (lambda rt=rt: rt.run_batch(x)) for name, rt in built.items()}
    times = (timer or interleaved)(fns, runs, warmup)
    keras_median = statistics.median(times["keras"])
    for name, row in rows.items():
        row.samples_s = list(times[name])
        row.median_ms = 1e3 * statistics.median(times[name])
        row.best_ms = 1e3 * min(times[name])
        row.x_keras = keras_median / statistics.median(times[name])
    choice = auto_choice(tag)
    return {
        "model_tag": tag, "size": [h, w], "runs": runs, "warmup": warmup,
        "cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "cores": cpu_count(),
        "system": f"{platform.system()} {platform.release()}", "versions": versions(),
        "load_average_start": load_start, "load_average_end": load_average(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": {n: asdict(r) for n, r in rows.items()}, "skipped": skipped,
        "auto": {"runtime": choice.runtime, "how": choice.how, "note": choice.note,
                 **auto_verdict(rows, choice.runtime)},
    }


def table_markdown(result: dict, description: str = "", command: str = "drn benchmark --runtimes") -> str:
    """The markdown report of :func:`run_runtime_table`'s result."""
    h, w = result["size"]
    flags = ", ".join(result["cpu_flags"]) or "none of note"
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    lines = [
        f"Runtimes{f' of {description}' if description else ''}: `{command}`, {result['date']}.",
        "",
        f"Machine: {result['cpu_model']}, {result['cores']} cores, flags {flags}; {result['system']}; load average "
        f"{result['load_average_start']} at the start, {result['load_average_end']} at the end. Versions: {versions}.",
        "",
        f"One {h}x{w} input (the centre of assets/sample.jpg, float32), one `run_batch` per runtime, {result['warmup']} warm-up then "
        f"{result['runs']} rounds with the runtimes in turn (a load change hits them alike); median and fastest "
        "run; x keras = Keras's median / the runtime's; max diff: the largest absolute difference from the Keras "
        "model's output on that input, in 8-bit levels (1 = 1/255).",
        "",
        "| runtime | median (ms) | fastest (ms) | x keras | max diff vs keras (levels) |",
        "|---|---:|---:|---:|---:|",
    ]
    auto = result["auto"]
    for name, r in result["rows"].items():
        mark = " (**auto**)" if name == auto["runtime"] else ""
        lines.append(f"| {name}{mark} | {r['median_ms']:.0f} | {r['best_ms']:.0f} | {r['x_keras']:.2f} | "
                     f"{r['max_diff_levels']:.3g} |")
    lines.append("")
    how = {"cached": "measured on this machine on first use and cached", "rule": "the CPU-flag rule",
           "gpu": "a GPU is visible", "only": "the one float runtime installed", "measured": "measured now"}
    line = f"`--runtime auto` picks **{auto['runtime']}** here ({how.get(auto['how'], auto['how'])}"
    line += f"; {auto['note']})." if auto.get("note") else ")."
    if auto.get("ratio") is not None:
        pct = 100 * (auto["ratio"] - 1)
        line += (" In this run it is the fastest float runtime" if auto["fastest"] == auto["runtime"] else
                 f" In this run the fastest float runtime is {auto['fastest']}; auto's is {pct:.1f} % slower")
        line += (f": within {AUTO_TOLERANCE:.0%} of the fastest float runtime."
                 if auto["within"] else f": **not** within {AUTO_TOLERANCE:.0%} of the fastest float runtime.")
    elif auto.get("fastest"):
        line += f" It did not run in this table; the fastest float runtime here is {auto['fastest']}."
    lines.append(line)
    if result["skipped"]:
        lines += [""] + [f"- not run: {name}: {why}" for name, why in result["skipped"].items()]
    lines.append("")
    return "\n".join(lines)


__all__ = ["AUTO_TOLERANCE", "auto_choice", "auto_verdict", "run_runtime_table", "table_markdown"]
