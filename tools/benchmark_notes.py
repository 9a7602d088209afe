"""The goals and notes of one round of performance work, put on a ``drn benchmark`` result.

``drn benchmark --json R.json`` measures and reports facts; this script adds what one round of work
aimed at (:data:`GOALS`: Keras fp32 inference and training against the measured matmul peak, the int8
speed-up) and explains each figure from the same run's numbers (the profile, and the diagnostics of
``tools/benchmark_diagnostics.py`` where the JSON has their rows)::

    drn benchmark --preset drn_x2 --json R.json
    python tools/benchmark_notes.py R.json [-o NOTES.md]      # the report, then "### Goals" and "### Notes"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's drn_tf
from drn_tf.bench import benchmark as B  # noqa: E402

GOALS = {
    "keras_fp32_pct_peak": 75.0,  # Keras fp32 inference, % of the measured matmul peak
    "int8_speedup": 4.0,  # TFLite int8 throughput / Keras fp32 throughput
    "train_pct_peak": 50.0,  # training GFLOP/s, % of the measured matmul peak
}
# the rows the training goal is taken from: TensorFlow fp32 training against the run's TensorFlow peak
TRAIN_VARIANTS = ("train-graph", "train-xla", "train-pipeline")


def evaluate_goals(rows: dict) -> list[dict]:
    """The round's three goals from the medians (``measured``), with the same
    figure from the fastest runs (``measured_best``) beside them. ``rows``:
    name -> row of a result (``result["rows"]``, dicts)."""

    def best(names, key):
        vals = [(rows[n][key], n) for n in names if n in rows and rows[n][key] is not None]
        return max(vals) if vals else (None, None)

    def goal(key, text, measured, measured_best, variant):
        target = GOALS[key]
        return {
            "goal": key,
            "text": text,
            "target": target,
            "measured": measured,
            "measured_best": measured_best,
            "variant": variant,
            "met": None if measured is None else measured >= target,
        }

    goals = []
    keras_pct, keras_name = best(("keras-graph", "keras-xla"), "pct_peak")
    keras_pct_best, _ = best(("keras-graph", "keras-xla"), "pct_peak_best")
    goals.append(goal(
        "keras_fp32_pct_peak",
        f"Keras fp32 inference >= {GOALS['keras_fp32_pct_peak']:.0f}% of the measured matmul peak",
        keras_pct, keras_pct_best, keras_name,
    ))
    keras_mp, keras_mp_name = best(("keras-eager", "keras-graph", "keras-xla"), "output_mp_per_s")
    keras_best, _ = best(("keras-eager", "keras-graph", "keras-xla"), "gflops_best")
    int8 = rows.get("tflite-int8")
    speedup = speedup_best = None
    if int8 is not None and int8["output_mp_per_s"] and keras_mp:
        speedup = int8["output_mp_per_s"] / keras_mp
        speedup_best = int8["gflops_best"] / keras_best
    goals.append(goal(
        "int8_speedup",
        f"TFLite int8 throughput >= {GOALS['int8_speedup']:.0f}x the Keras fp32 throughput (best Keras variant)",
        speedup, speedup_best, f"tflite-int8 / {keras_mp_name}" if speedup else None,
    ))
    train_pct, train_name = best(TRAIN_VARIANTS, "pct_peak")
    train_pct_best, _ = best(TRAIN_VARIANTS, "pct_peak_best")
    goals.append(goal(
        "train_pct_peak",
        f"training >= {GOALS['train_pct_peak']:.0f}% of the measured matmul peak (training FLOPs = 3 x forward)",
        train_pct, train_pct_best, train_name,
    ))
    return goals


def notes_markdown(result: dict) -> str:
    """``### Goals`` (the table) and ``### Notes`` (:func:`explain`) for ``result``."""
    m, mod, inp = result["machine"], result["model"], result["input"]
    goals = evaluate_goals({r["name"]: r for r in result["rows"]})
    lines = ["### Goals", ""]
    conditions = (mod.get("preset") or "model file", inp["height"], inp["width"], m["cores"])
    if conditions != ("drn_x2", 256, 256, 2):
        lines += [
            f"The goals are stated for drn_x2 at 256x256 on 2 cores; this run: {conditions[0]} at "
            f"{conditions[1]}x{conditions[2]} on {conditions[3]} cores.",
            "",
        ]
    lines += [
        "| goal | target | measured (medians) | best runs | met |",
        "|---|---:|---:|---:|---|",
    ]
    for g in goals:
        unit = "x" if g["goal"] == "int8_speedup" else "%"
        fmt = "{:.2f}" if unit == "x" else "{:.1f}"
        measured = "-" if g["measured"] is None else fmt.format(g["measured"]) + unit
        if g["variant"]:
            measured += f" ({g['variant']})"
        best = "-" if g.get("measured_best") is None else fmt.format(g["measured_best"]) + unit
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(f"| {g['text']} | {g['target']:g}{unit} | {measured} | {best} | {met} |")
    notes = explain(result, goals)
    if notes:
        lines += ["", "### Notes", ""]
        for key, text in notes.items():
            lines.append(f"- **{key}**: {text}")
    lines.append("")
    return "\n".join(lines)


def _row(result: dict, name: str) -> dict | None:
    for r in result["rows"]:
        if r["name"] == name and r["available"] and r["gflops"] is not None:
            return r
    return None


def _profile_text(p: dict | None, peak: float) -> str:
    if not p or not p.get("conv_ms"):
        return "no profile"
    others = ", ".join(f"{k} {v:.0f} ms" for k, v in p["top_ops_ms"] if not B.is_conv_op(k))[:200]
    if p.get("conv_gflops"):
        speed = f" and run at {p['conv_gflops']:.1f} GFLOP/s ({100 * p['conv_gflops'] / peak:.0f}% of the peak)"
    else:
        speed = " (convolutions ran concurrently on the inter-op threads, so no per-kernel speed)"
    return f"the convolutions take {p['conv_share_pct']:.0f}% of the op time{speed}; the rest is {others or 'nothing'}"


def _vs(a: dict, b: dict) -> str:
    """'a is N% faster/slower than b' on the medians, with the fastest runs beside."""
    med = 100 * (b["latency_ms"] / a["latency_ms"] - 1)
    best = 100 * (b["best_ms"] / a["best_ms"] - 1)
    return f"{med:+.1f}% throughput on the medians, {best:+.1f}% on the fastest runs"


def explain(result: dict, goals: list[dict]) -> dict:
    """Notes for the report: per goal, the measured figure, the profile's
    explanation and (when not met) what would close the gap - all filled in
    from this run's numbers."""
    peak = result["peak"]["gflops"]
    prof = result.get("profiles") or {}
    goals = {g["goal"]: g for g in goals}
    notes = {}

    def head(g, unit):
        fmt = "{:.2f}" if unit == "x" else "{:.0f}"
        text = f"{fmt.format(g['measured'])}{unit} ({g['variant']}; fastest runs {fmt.format(g['measured_best'])}{unit})"
        return f"{text}, goal {g['target']:g}{unit}: " + ("met." if g["met"] else "**not met**.")

    g = goals["keras_fp32_pct_peak"]
    if g["measured"] is not None:
        body = f" Profile of one graph-mode run: {_profile_text(prof.get('inference'), peak)}."
        body += (
            " oneDNN runs every convolution as one `brg_conv_fwd` primitive with the bias and the LeakyReLU/ELU "
            "fused as post-ops (and the global skip as a sum post-op), so what is left around the convolutions is "
            "one Pad and one Add per residual distilling block."
        )
        graph, concat, xla = _row(result, "keras-graph"), _row(result, "keras-graph-concat"), _row(result, "keras-xla")
        if concat and graph:
            body += (
                " That block form, `y + pad(x)`, replaced the first form (`concat(y[..., :w] + x, y[..., w:])`, two "
                f"slices, an add and a concat; bit-identical results): the pad form gives {_vs(graph, concat)} "
                "against it in this run (`keras-graph-concat`)."
            )
        if xla and graph:
            body += f" XLA (`jit_compile=True`) against graph mode: {_vs(xla, graph)}" + (
                "; XLA is faster here, worth `jit_compile=True` in inference on this kind of machine."
                if xla["latency_ms"] < graph["latency_ms"] and xla["best_ms"] < graph["best_ms"]
                else "; it does not beat oneDNN's fused convolutions, so inference stays in graph mode."
            )
        if not g["met"]:
            body += (
                " Closing the gap needs faster convolution kernels rather than less overhead: e.g. oneDNN's bf16 "
                "math mode (`ONEDNN_DEFAULT_FPMATH_MODE=BF16` on CPUs with avx512_bf16/AMX; changes the numerics), "
                "or a quieter machine (the fastest runs show what the kernels do alone)."
            )
        notes["Keras fp32 inference"] = head(g, "%") + body

    g = goals["int8_speedup"]
    i8 = result.get("int8_peak") or {}
    int8 = _row(result, "tflite-int8")
    if g["measured"] is not None and int8:
        body = f" The int8 model runs at {int8['gflops']:.0f} GOP/s (fastest run {int8['gflops_best']:.0f})."
        if i8.get("gops"):
            k = i8["ratio_to_fp32_peak"]
            keras_frac = (goals["keras_fp32_pct_peak"]["measured"] or 100.0) / 100.0
            body += (
                f" The measured int8 peak (an XNNPACK int8 matrix product) is {i8['gops']:.0f} GOP/s = {k:.2f}x the "
                f"fp32 peak (fastest runs: {i8['ratio_to_fp32_peak_best']:.2f}x), so with Keras fp32 at "
                f"{100 * keras_frac:.0f}% of the fp32 peak, 4x needs the int8 model at "
                f"{100 * 4 * keras_frac / k:.0f}% of the int8 peak; it reaches {100 * int8['gflops'] / i8['gops']:.0f}%."
            )
        convs = _row(result, "tflite-int8-convs")
        conv_at_peak = None
        if convs:
            share = 100 * convs["latency_ms"] / int8["latency_ms"]
            conv_at_peak = convs["gflops"] / i8["gops"] if i8.get("gops") else None
            body += (
                f" The model's convolutions alone in int8 (`tflite-int8-convs`) take {convs['latency_ms']:.0f} ms "
                f"of its {int8['latency_ms']:.0f} ms ({share:.0f}%)"
                + (f" and reach {100 * conv_at_peak:.0f}% of the int8 peak" if conv_at_peak else "")
                + "; the rest is the LEAKY_RELU, ADD and PAD passes and the three ELUs (in int8: the int8 export "
                "replaces the converter's DEQUANTIZE / ELU / QUANTIZE round trips)."
            )
        if not g["met"]:
            if convs and conv_at_peak and conv_at_peak >= 0.9:
                body += (
                    " So the int8 convolutions already run at XNNPACK's int8 matrix peak: the gap is the ratio of "
                    "the two peaks against how well oneDNN does in fp32, plus the non-convolution passes. Without "
                    f"those passes the ratio would be {g['measured'] * int8['latency_ms'] / convs['latency_ms']:.2f}x. "
                    "What would close it: fusing LeakyReLU and the residual add into the int8 convolutions "
                    "(XNNPACK fuses only clamp-type activations into a convolution), or int8 kernels beyond "
                    "XNNPACK's (e.g. AMX on newer CPUs). Nothing on the model side can do it without changing the architecture (e.g. ReLU "
                    "for LeakyReLU/ELU), which the trained weights rule out; and the faster the fp32 baseline, the "
                    "harder a 4x ratio."
                )
            else:
                body += (
                    " What would close it: int8 3x3 convolution kernels nearer XNNPACK's own int8 matrix peak (these "
                    "are indirect GEMMs with only 64-128 output channels), fusing LeakyReLU and the residual add into "
                    "them (XNNPACK fuses only clamp-type activations). "
                    "Nothing on the model side can do it without changing the architecture, which the trained "
                    "weights rule out."
                )
        notes["TFLite int8 speed-up"] = head(g, "x") + body

    g = goals["train_pct_peak"]
    if g["measured"] is not None:
        body = f" Profile of one graph-mode step: {_profile_text(prof.get('training'), peak)}."
        tg, tx, tp = _row(result, "train-graph"), _row(result, "train-xla"), _row(result, "train-pipeline")
        tc = _row(result, "train-graph-concat")
        if tg and tc:
            body += (
                f" The `y + pad(x)` form of the residual distilling block against its first form (slices, add, "
                f"concat; `train-graph-concat`): {_vs(tg, tc)} - the gradients of the slices and the concat "
                "(StridedSliceGrad, Slice) are what it saves."
            )
        tb = _row(result, "train-bf16")
        if tg and tb:
            body += (
                f" The mixed_bfloat16 policy against float32 (`train-bf16`, not counted in the goal): {_vs(tb, tg)}"
                + (" - on a CPU with bf16 instructions `drn train --mixed-precision mixed_bfloat16` is the faster "
                   "way to train here." if tb["latency_ms"] < tg["latency_ms"] else " - slower on this CPU.")
            )
        if tg and tx:
            body += f" XLA against graph mode: {_vs(tx, tg)}" + (
                "; XLA is faster here." if tx["latency_ms"] < tg["latency_ms"] else
                "; the trainer's default (`jit_compile: auto`, XLA on GPU only) is right for CPUs."
            )
        tj = _row(result, "train-jax")
        if tg and tj:
            body += (
                f" On the JAX backend (`train-jax`, in its own process) the same step runs at "
                f"{tj['patches_per_s']:.1f} patches/s = {tj['pct_peak']:.0f}% of JAX's own fp32 matmul peak there "
                f"({tj['peak_gflops']:.0f} GFLOP/s), against TensorFlow's {tg['pct_peak']:.0f}% of its peak."
            )
        pipe = result.get("input_pipeline_patches_per_s")
        if pipe and tg:
            body += (
                f" The input pipeline alone makes {pipe:.0f} patches/s against {tg['patches_per_s']:.1f} consumed"
                + (f"; with it feeding the steps (prefetch) training does {tp['patches_per_s']:.1f} patches/s, "
                   "so it costs nothing measurable." if tp else ".")
            )
        if not g["met"]:
            body += (
                " Closing it: the backward convolutions (`Conv2DBackpropFilter/Input`) are the cost; a larger batch "
                "or patch gives oneDNN larger problems; bf16 math mode would trade precision for speed."
            )
        notes["Training"] = head(g, "%") + body
    return notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Goals and notes of one round on a `drn benchmark --json` result.")
    parser.add_argument("result", help="the JSON of drn benchmark --json (or tools/benchmark_diagnostics.py --json)")
    parser.add_argument("-o", "--output", help="write the report with the notes to this file too")
    args = parser.parse_args(argv)
    with open(args.result) as f:
        result = json.load(f)
    text = B.to_markdown(result) + "\n" + notes_markdown(result)
    sys.stdout.write(text)
    if args.output:
        B.write_text(text, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
