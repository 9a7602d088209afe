"""Training throughput of a preset for several batch and patch sizes on this device, to pick the ones a
GPU run of ``training/gpu_session.sh`` trains with (batch and patch size picked by a measured sweep).

For each (batch, patch): the engine's model and optimizer (``drn_tf.train.recipe.build_model``, the
preset's config, the given dtype policy, ``steps_per_execution``), a batch of random patches already on
the device (the step's time does not depend on the pixels), compile + warm-up, then timed steps. Training
FLOPs = 3 x forward, 2 FLOPs per multiply-add (``drn_tf.models.analysis.count_macs``), put against a
matmul in the policy's precision measured in the same process (``jax_matmul_peak_tflops``). Prints a
table and, last, the best setting as ``BATCH=.. PATCH=..`` (what ``gpu_session.sh`` reads with SWEEP=1);
``--json`` writes every row. Any Keras backend; on a GPU machine: ``KERAS_BACKEND=jax``.

``--pipelines numpy,device --data DIR --train train``: then, at the best (batch, patch), the same steps fed
by the engine's input pipelines on the real training set (``numpy``: ``PatchSampler.stream`` with
``--workers`` host threads; ``device``: ``DeviceSampler``, the set on the accelerator as uint8), each for
``--pipeline-steps`` steps after a warm-up, as patches/s and as a share of the model-only rate (how much the
input holds the accelerator back); prints ``PIPELINE=..`` for the fastest.

    KERAS_BACKEND=jax python training/gpu_sweep.py --preset drn_x2 --batches 32,64,128 --patches 48,64 \\
        --policy mixed_bfloat16 --seconds 90 --json runs/gpu/sweep.json \\
        --pipelines numpy,device --data .gpu/data --train train --workers 6

``--seconds`` bounds the whole sweep: combinations still untried when it runs out are skipped (said so).
A combination that does not fit in memory is reported as such and the sweep goes on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build(preset: str, batch: int, patch: int, policy: str, spe: int = 1):
    """The engine's model and optimizer for the preset at this batch and patch size (not yet traced)."""
    import keras

    from drn_tf.models.presets import get_preset
    from drn_tf.train.config import load_config, resolve_config
    from drn_tf.train.recipe import build_model

    keras.config.set_dtype_policy(policy)
    scale = get_preset(preset)["config"]["scale"]
    cfg = resolve_config(load_config(sets=[f"model.preset={preset}", f"model.scale={scale}",
                                           f"train.batch_size={batch}", f"data.patch_size={patch}"]))
    return build_model(cfg, jit_compile=True, steps_per_execution=spe)


def random_stream(batch: int, patch: int, scale: int):
    """One random batch, already on the device, over and over (the step's time does not depend on the pixels)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.random((batch, patch, patch, 3), dtype=np.float32)
    y = rng.random((batch, patch * scale, patch * scale, 3), dtype=np.float32)
    if keras.backend.backend() == "jax":
        import jax

        x, y = jax.device_put(x), jax.device_put(y)
    while True:
        yield x, y


def timed_fit(model, stream, steps: int, spe: int = 1, warmup: int = 0) -> tuple[float, float, int]:
    """``(compile_s, seconds per step, steps timed)``: a ``fit`` of ``spe`` steps (tracing, compiling), then
    one ``fit`` of ``warmup + steps`` steps timed from the end of the warm-up steps (the result of that
    step awaited) to the end of the fit, so neither Keras's per-``fit`` set-up nor batches a pipeline cut
    ahead during the compile count."""
    import keras

    def batches():  # not `yield from`: fit closes its generator, which would close the shared stream too
        while True:
            yield next(stream)

    t0 = time.perf_counter()
    model.fit(batches(), steps_per_epoch=spe, epochs=1, verbose=0, shuffle=False)
    compile_s = time.perf_counter() - t0
    warm_calls = max(1, -(-warmup // spe))  # callbacks see one batch end per execution of spe steps
    calls = warm_calls + max(1, -(-steps // spe))
    stamp = {}

    class Stamp(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def on_train_batch_end(self, batch, logs=None):
            self.calls += 1
            if self.calls == warm_calls:
                if logs and "loss" in logs:
                    float(logs["loss"])  # wait for that step's result (asynchronous dispatch)
                stamp["t"] = time.perf_counter()

    model.fit(batches(), steps_per_epoch=calls * spe, epochs=1, verbose=0, shuffle=False, callbacks=[Stamp()])
    timed = (calls - warm_calls) * spe
    return compile_s, (time.perf_counter() - stamp["t"]) / timed, timed


def measure(model, preset: str, batch: int, patch: int, policy: str, steps: int, spe: int = 1, stream=None,
            warmup: int = 0) -> dict:
    """One combination's row: ``timed_fit`` of ``model`` on ``stream`` (default :func:`random_stream`), as
    step time, patches/s and training TFLOP/s (3 x forward, 2 FLOPs per multiply-add)."""
    from drn_tf.models.analysis import count_macs, model_config
    from drn_tf.models.presets import get_preset

    scale = get_preset(preset)["config"]["scale"]
    stream = random_stream(batch, patch, scale) if stream is None else stream
    compile_s, per_step, timed = timed_fit(model, stream, steps, spe, warmup=max(warmup, spe))
    flops = 3 * 2 * count_macs(model_config(model), patch, patch) * batch
    return {"batch": batch, "patch": patch, "policy": policy, "steps_per_execution": spe, "steps": timed,
            "step_ms": 1e3 * per_step, "patches_per_s": batch / per_step, "train_tflops": flops / per_step / 1e12,
            "compile_s": compile_s}


def _reason(exc: Exception) -> str:
    """The first line of an error (out of memory and the like), for the table and sweep.json."""
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _percent_of(row: dict, peak: dict | None) -> str:
    """Sets ``row["percent_of_peak"]`` against the matmul reference (when there is one); its text for the table."""
    if not peak:
        return "-"
    row["percent_of_peak"] = 100 * row["train_tflops"] / peak["tflops"]
    return f"{row['percent_of_peak']:.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="drn_x2")
    p.add_argument("--batches", type=_ints, default=[32, 64, 128], help="comma-separated (default 32,64,128)")
    p.add_argument("--patches", type=_ints, default=[48, 64], help="LR patch sides, comma-separated (default 48,64)")
    p.add_argument("--policy", default="mixed_bfloat16", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per combination (default 10)")
    p.add_argument("--steps-per-execution", type=int, default=1, dest="spe")
    p.add_argument("--seconds", type=float, default=120.0, help="time budget of the whole sweep (default 120)")
    p.add_argument("--json", help="write every row (and the matmul reference) here")
    p.add_argument("--pipelines", default="", help="then time these input pipelines at the best batch and patch, "
                   "comma-separated: numpy, device (JAX only); needs --data")
    p.add_argument("--data", help="data root of the training set (for --pipelines)")
    p.add_argument("--train", nargs="+", default=["train"], help="training folders under --data (default: train)")
    p.add_argument("--workers", type=int, default=6, help="host threads of the numpy pipeline (default 6)")
    p.add_argument("--pipeline-steps", type=int, default=200, help="timed steps per pipeline (default 200)")
    p.add_argument("--cache-dir", help="LR cache of the training set (default: the engine's)")
    args = p.parse_args(argv)
    pipelines = [v.strip() for v in args.pipelines.split(",") if v.strip()]
    if sorted(set(pipelines) - {"numpy", "device"}):
        p.error(f"--pipelines: unknown {sorted(set(pipelines) - {'numpy', 'device'})} (numpy, device)")
    if pipelines and not args.data:
        p.error("--pipelines needs --data")

    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    import keras

    from drn_tf.models.presets import get_preset

    try:
        get_preset(args.preset)
    except ValueError as exc:
        p.error(str(exc))
    backend = keras.backend.backend()
    peak = None
    if backend == "jax":
        from drn_tf.train.summary import jax_matmul_peak_tflops

        dtype = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}.get(args.policy, "float32")
        peak = jax_matmul_peak_tflops(dtype)
        print(f"matmul reference: {peak['dtype']} {peak['n']}x{peak['n']} at {peak['tflops']:.2f} TFLOP/s on "
              f"{peak['device']}", flush=True)
    start = time.monotonic()
    rows, skipped, best_model = [], [], None
    combos = [(b, q) for q in args.patches for b in args.batches]
    print(f"{'batch':>6} {'patch':>6} {'ms/step':>9} {'patches/s':>10} {'TFLOP/s':>9} {'% peak':>7} {'compile s':>9}",
          flush=True)
    for batch, patch in combos:
        if time.monotonic() - start > args.seconds:
            skipped.append((batch, patch))
            continue
        try:
            model = build(args.preset, batch, patch, args.policy, args.spe)
            row = measure(model, args.preset, batch, patch, args.policy, args.steps, args.spe)
        except Exception as exc:  # noqa: BLE001 - out of memory and the like: this combination only
            rows.append({"batch": batch, "patch": patch, "error": _reason(exc)})
            print(f"{batch:>6} {patch:>6}  failed: {rows[-1]['error']}", flush=True)
            continue
        rows.append(row)
        if best_model is None or row["train_tflops"] > best_model[0]["train_tflops"]:
            best_model = (row, model)  # the pipelines are timed on it (no second compile)
        model = None
        pct = _percent_of(row, peak)
        print(f"{batch:>6} {patch:>6} {row['step_ms']:>9.1f} {row['patches_per_s']:>10.1f} {row['train_tflops']:>9.3f} "
              f"{pct:>7} {row['compile_s']:>9.1f}", flush=True)
    if skipped:
        print(f"time budget ({args.seconds:.0f} s) spent: not measured {', '.join(f'{b}x{q}' for b, q in skipped)}")
    record = {"preset": args.preset, "backend": backend, "matmul_peak": peak, "rows": rows, "skipped": skipped,
              "pipelines": []}

    def save():
        if args.json:
            from drn_tf.core.utils import write_atomic

            write_atomic(args.json, json.dumps(record, indent=2))

    save()
    if best_model is None:
        print("no combination could be measured", file=sys.stderr)
        return 1
    best = best_model[0]
    print(f"BATCH={best['batch']} PATCH={best['patch']}", flush=True)  # read by gpu_session.sh, whatever follows
    if pipelines:
        if "device" in pipelines and backend != "jax":
            print(f"pipeline device: needs the JAX backend (this is {backend}); not measured")
            pipelines = [v for v in pipelines if v != "device"]
        try:
            record["pipelines"] = time_pipelines(args, best_model, pipelines, peak)
        except Exception as exc:  # noqa: BLE001 - e.g. the training set unreadable: keep the batch and patch
            record["pipelines"] = [{"pipeline": "all", "error": _reason(exc)}]
            print(f"pipelines not measured: {record['pipelines'][0]['error']}", flush=True)
        save()
    fastest = max((r for r in record["pipelines"] if "error" not in r), key=lambda r: r["patches_per_s"], default=None)
    if fastest:
        print(f"PIPELINE={fastest['pipeline']}")
    return 0


def time_pipelines(args, best_model: tuple, pipelines: list[str], peak) -> list[dict]:
    """The best (batch, patch) fed by each input pipeline of the engine on the real training set (on the
    model that row was measured with)."""
    from drn_tf.data.patches import PatchSampler, load_pairs
    from drn_tf.models.presets import get_preset

    best, model = best_model
    batch, patch = best["batch"], best["patch"]
    scale = get_preset(args.preset)["config"]["scale"]
    t0 = time.perf_counter()
    lrs, hrs, _ = load_pairs([Path(args.data) / t for t in args.train], scale, cache_dir=args.cache_dir,
                             min_lr_size=patch)
    print(f"pipelines at batch {batch}, patch {patch}: {len(lrs)} training images loaded in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    print(f"{'pipeline':>9} {'ms/step':>9} {'patches/s':>10} {'TFLOP/s':>9} {'% peak':>7} {'of model-only':>13}", flush=True)
    out = []
    for name in pipelines:
        try:
            if name == "device":
                from drn_tf.data.device import DeviceSampler

                stream = DeviceSampler(lrs, hrs, scale, patch_size=patch, batch_size=batch, seed=0).stream()
            else:
                stream = PatchSampler(lrs, hrs, scale, patch_size=patch, batch_size=batch, steps_per_epoch=1000,
                                      seed=0).stream(workers=args.workers)
            # warm-up: drain what the threads cut ahead during the compile, so the timed steps see the
            # pipeline's steady rate
            row = measure(model, args.preset, batch, patch, args.policy, args.pipeline_steps, args.spe,
                          stream=stream, warmup=4 * args.workers + 2)
        except Exception as exc:  # noqa: BLE001 - this pipeline only
            out.append({"pipeline": name, "error": _reason(exc)})
            print(f"{name:>9}  failed: {out[-1]['error']}", flush=True)
            continue
        row["pipeline"] = name
        row["of_model_only"] = row["patches_per_s"] / best["patches_per_s"]
        out.append(row)
        pct = _percent_of(row, peak)
        print(f"{name:>9} {row['step_ms']:>9.1f} {row['patches_per_s']:>10.1f} {row['train_tflops']:>9.3f} {pct:>7} "
              f"{100 * row['of_model_only']:>12.0f}%", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
