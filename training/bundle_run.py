#!/usr/bin/env python
"""After a GPU run: score what `training/gpu_session.sh` wrote against the bundled model, bundle it only
where it beats the bundled model on Set5 *and* Set14, and keep the record.

    python training/bundle_run.py PRESET RESULTS_DIR --run-name NAME [--data ../shared/data] [--apply]

RESULTS_DIR is the folder the GPU run's results were written to (`gpu_session.sh`'s RESULTS_DIR, copied
back from the GPU host): `best.keras`, `last.keras`, `model.keras`, `history.csv`, `run.json`,
`config.yaml`, `sweep.json`. NAME names the run in the records (e.g. `gpu3`; the first runs are `gpu1`
and `gpu2`). Candidates: each of the three models, the average of
best and last, and the average of best, last and the bundled model (the run continued the bundled weights,
so all lie in one basin; `drn average`). Each candidate and the bundled model are evaluated by the protocol
(`drn evaluate`'s `evaluate_folder`) on Set5 and Set14 at the preset's scale.

Without `--apply` it prints the table and the decision. With `--apply`:
  - the winner (if any) becomes `assets/PRESET.keras` (a bare float32 `.keras`, as `drn average` writes);
  - the run's record goes to `assets/training/NAME_PRESET.{csv,json}` (history, run.json) and
    `sweep_NAME_PRESET.json`; the validation curve to `assets/training/NAME_PRESET.png` (`drn plot`);
  - `assets/training/NAME_PRESET.md`: the model card of the run (hardware, steps, patches seen, training
    FLOP rate and % of the matmul peak, wall time, the evaluation table, the validation slope at the end,
    the commands) — written whether or not the weights were bundled, so the next run's plan knows what
    more time buys;
  - `converters/bundle_int8.py PRESET` refreshes `assets/int8.json` for new weights (`--no-int8`: skip;
    a test fails until it is run), then the new weights' int8 loss on Set5 and Set14 is printed, with a
    warning above the 0.10 dB bound the tests hold.
`--assets DIR` works on another assets folder (the tests use one).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETS = ("Set5", "Set14")


def end_slope(rows: list[dict], key: str, fraction: float = 1 / 3) -> dict | None:
    """Least-squares slope of validation ``key`` over the last ``fraction`` of the run's validated epochs
    (at least 3 points), per 100 k steps and per minute of training wall clock, with the window it used."""
    pts = [r for r in rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
           and isinstance(r.get("step"), (int, float))]
    if len(pts) < 3:
        return None
    tail = pts[-max(3, round(len(pts) * fraction)):]

    def slope(xs, ys):
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        den = sum((x - mx) ** 2 for x in xs)
        return None if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den

    per_step = slope([r["step"] for r in tail], [r[key] for r in tail])
    walls = [r.get("wall_s") for r in tail]
    per_s = slope(walls, [r[key] for r in tail]) if all(isinstance(w, (int, float)) for w in walls) else None
    return {"key": key, "points": len(tail), "from_step": int(tail[0]["step"]), "to_step": int(tail[-1]["step"]),
            "db_per_100k_steps": None if per_step is None else per_step * 1e5,
            "db_per_minute": None if per_s is None else per_s * 60, "lr_end": tail[-1].get("lr")}


def evaluate(model, data: Path, scale: int) -> dict:
    """Set mean PSNR of ``model`` (a ``.keras`` path, a Keras model or a runtime model) on each of SETS."""
    from drn_tf.inference.evaluation import evaluate_folder
    from drn_tf.models.resolve import load_model_file

    if isinstance(model, (str, Path)):
        model = load_model_file(model, scale)
    return {s: evaluate_folder(data / "benchmark" / s, scale, model).psnr for s in SETS}


def candidates(results_dir: Path, bundled: Path | None, work: Path) -> dict[str, Path]:
    """name -> bare float32 .keras file; identical weights are listed once."""
    from drn_tf.inference.runtimes import weights_digest
    from drn_tf.models.resolve import load_model_file
    from drn_tf.train.warmstart import average_models

    found = {n: results_dir / f"{n}.keras" for n in ("best", "last", "model")
             if (results_dir / f"{n}.keras").is_file()}
    if not found:
        raise SystemExit(f"{results_dir}: no best.keras, last.keras or model.keras "
                         "(not a folder gpu_session.sh wrote)")
    made: dict[str, Path] = {}
    for name, src in found.items():
        made[name] = work / f"{name}.keras"
        average_models([src], made[name])  # bare float32, as bundled files are
    if "best" in found and "last" in found:
        made["avg(best,last)"] = work / "avg_best_last.keras"
        average_models([found["best"], found["last"]], made["avg(best,last)"])
        if bundled is not None:
            made["avg(best,last,bundled)"] = work / "avg_best_last_bundled.keras"
            try:
                average_models([found["best"], found["last"], bundled], made["avg(best,last,bundled)"])
            except ValueError:  # another architecture than the bundled model
                del made["avg(best,last,bundled)"]
    unique, seen = {}, set()
    for name, path in made.items():
        digest = weights_digest(load_model_file(path))
        if digest not in seen:
            seen.add(digest)
            unique[name] = path
    return unique


def trained_on(results_dir: Path) -> list[str]:
    """The training folders of the run (its config.yaml), [] when unknown."""
    if not (results_dir / "config.yaml").is_file():
        return []
    import yaml

    try:
        return [str(t) for t in (yaml.safe_load((results_dir / "config.yaml").read_text()) or {}).get("data", {}).get("train") or []]
    except (yaml.YAMLError, AttributeError):
        return []


def model_card(preset: str, run_name: str, run: dict, scores: dict, bundled_scores: dict | None, winner: str | None,
               slope: dict | None, results_dir: Path, sweep: dict | None) -> str:
    train = trained_on(results_dir)
    def fmt(v, spec=".2f"):
        return "–" if v is None else format(v, spec)

    peak = run.get("matmul_peak") or {}
    lines = [
        f"# {preset}: GPU run {run_name}",
        "",
        "| | value |",
        "|---|---|",
        f"| hardware | {run.get('device', '?')}, backend {run.get('backend', '?')} "
        f"({', '.join(f'{k} {v}' for k, v in run.items() if k in ('jax', 'tensorflow', 'keras'))}) |",
        f"| data | {', '.join(map(str, train)) or '?'}; LR patches {run.get('patch_size')}×{run.get('patch_size')}, "
        f"batch {run.get('batch_size')}, input pipeline {run.get('pipeline')}, policy {run.get('dtype_policy')} |",
        f"| steps | {run.get('steps')} in all, {run.get('session_steps')} in this run (planned {run.get('planned_steps')}) |",
        f"| patches seen | {run.get('patches_seen')} (this run: "
        f"{(run.get('session_steps') or 0) * (run.get('batch_size') or 0)}) |",
        f"| training rate | {run.get('patches_per_s')} patches/s, {run.get('train_tflops')} TFLOP/s = "
        f"{run.get('train_percent_of_peak')} % of a {peak.get('dtype', '?')} matmul at {fmt(peak.get('tflops'))} "
        f"TFLOP/s measured in the same run |",
        f"| wall time | {run.get('wall_s')} s (training {run.get('session_train_s')} s, validation "
        f"{run.get('session_validation_s')} s) |",
        f"| best validation | {fmt(run.get('best_val_psnr'), '.3f')} dB at epoch {run.get('best_epoch')} |",
    ]
    if slope:
        lines.append(f"| slope at the end | {fmt(slope['db_per_100k_steps'], '+.3f')} dB per 100 k steps, "
                     f"{fmt(slope['db_per_minute'], '+.4f')} dB per minute ({slope['key']}, last {slope['points']} "
                     f"validations, steps {slope['from_step']}–{slope['to_step']}"
                     + (f"; the learning rate had decayed to {slope['lr_end']:.2e} by the end, so a longer schedule "
                        "buys more than this slope says" if isinstance(slope.get("lr_end"), (int, float)) else "")
                     + ") |")
    if sweep:
        ok = [r for r in sweep.get("rows", []) if "error" not in r]
        if ok:
            best = max(ok, key=lambda r: r["train_tflops"])
            lines.append(f"| sweep | {len(ok)} batch × patch measured, best batch {best['batch']} patch {best['patch']} "
                         f"at {best['train_tflops']:.1f} TFLOP/s model-only; pipelines: "
                         + (", ".join(f"{r['pipeline']} {r['patches_per_s']:.0f} patches/s" for r in
                                      sweep.get("pipelines", []) if "error" not in r) or "not measured") + " |")
    lines += ["", "Evaluation (`drn evaluate` protocol, PSNR dB):", "",
              "| model | " + " | ".join(SETS) + " |", "|---|" + "---:|" * len(SETS)]
    if bundled_scores:
        lines.append("| bundled before | " + " | ".join(f"{bundled_scores[s]:.3f}" for s in SETS) + " |")
    for name, sc in scores.items():
        mark = " **(bundled now)**" if name == winner else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{sc[s]:.3f}" for s in SETS) + " |")
    if winner:
        decision = (f"`{winner}` beats the bundled model on both sets and is bundled." if bundled_scores
                    else f"`{winner}` scores best and is bundled (there was no bundled model).")
    else:
        decision = "nothing beats the bundled model on both sets; it is kept."
    lines += ["", "Decision: " + decision, "",
              "Commands: on the GPU host `SWEEP=1 bash training/gpu_session.sh "
              f"{preset} MINUTES` (with the offline bundle `.gpu/`, see docs/training.md), then "
              f"`python training/bundle_run.py {preset} RESULTS_DIR --run-name {run_name} --apply`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset")
    p.add_argument("results_dir", type=Path, help="the folder the GPU run's results were written to")
    p.add_argument("--run-name", required=True, help="name of the run in the records, e.g. gpu3")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--assets", type=Path, default=ROOT / "assets")
    p.add_argument("--apply", action="store_true", help="bundle the winner and write the records")
    p.add_argument("--no-int8", action="store_true", help="do not refresh assets/int8.json")
    args = p.parse_args(argv)

    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    from drn_tf.models.presets import get_preset
    from drn_tf.train.rundir import read_history
    from drn_tf.train.warmstart import average_models

    try:
        scale = get_preset(args.preset)["config"]["scale"]
    except ValueError as exc:
        p.error(str(exc))
    for s in SETS:
        if not (args.data / "benchmark" / s).is_dir():
            p.error(f"{args.data / 'benchmark' / s}: no such folder (--data)")
    leaked = [t for t in trained_on(args.results_dir) if any(s.lower() in t.lower() for s in SETS)]
    if leaked and args.apply:
        p.error(f"{args.results_dir} trained on {', '.join(leaked)}: scores on {' and '.join(SETS)} would not be a test; "
                "not bundling (run without --apply to see them)")
    bundled = args.assets / f"{args.preset}.keras"
    bundled = bundled if bundled.is_file() else None
    run = json.loads((args.results_dir / "run.json").read_text()) if (args.results_dir / "run.json").is_file() else {}
    if run.get("preset") and run["preset"] != args.preset:
        p.error(f"{args.results_dir} is a run of {run['preset']}, not {args.preset}")
    results = args.results_dir
    sweep = json.loads((results / "sweep.json").read_text()) if (results / "sweep.json").is_file() else None
    rows = read_history(results / "history.csv") if (results / "history.csv").is_file() else []
    from drn_tf.cli.commands.plot import psnr_keys

    keys = psnr_keys(rows) if rows else []  # val_<first set>_psnr
    slope = end_slope(rows, keys[0]) if keys else None

    with tempfile.TemporaryDirectory(prefix="drn_bundle_") as work:
        cands = candidates(args.results_dir, bundled, Path(work))
        bundled_scores = evaluate(bundled, args.data, scale) if bundled else None
        scores = {}
        for name, path in cands.items():
            scores[name] = evaluate(path, args.data, scale)
            print(f"{name:>24}: " + "  ".join(f"{s} {scores[name][s]:.3f}" for s in SETS), flush=True)
        if bundled_scores:
            print(f"{'bundled':>24}: " + "  ".join(f"{s} {bundled_scores[s]:.3f}" for s in SETS))
        better = {n: sc for n, sc in scores.items()
                  if bundled_scores is None or all(sc[s] > bundled_scores[s] for s in SETS)}
        winner = max(better, key=lambda n: sum(better[n].values())) if better else None
        print(f"winner: {winner}" if winner else "nothing beats the bundled model on both sets: keep it")
        if slope and slope["db_per_100k_steps"] is not None:
            print(f"validation slope at the end: {slope['db_per_100k_steps']:+.3f} dB per 100 k steps"
                  + (f", {slope['db_per_minute']:+.4f} dB per minute" if slope["db_per_minute"] is not None else ""))
        if not args.apply:
            print("(dry run: --apply bundles the winner and writes the records)")
            return 0
        records = args.assets / "training"
        records.mkdir(parents=True, exist_ok=True)
        stem = f"{args.run_name}_{args.preset}"
        if winner:
            average_models([cands[winner]], args.assets / f"{args.preset}.keras")
            print(f"bundled: {args.assets / (args.preset + '.keras')}")
    for src, dest in (("history.csv", f"{stem}.csv"), ("run.json", f"{stem}.json"), ("sweep.json", f"sweep_{stem}.json")):
        if (args.results_dir / src).is_file():
            shutil.copyfile(args.results_dir / src, records / dest)
    if rows:
        from drn_tf.cli.main import main as drn

        drn(["plot", str(records / f"{stem}.csv"), "--x", "step", "--dpi", "80", "--out", str(records / f"{stem}.png"),
             "--title", f"{args.preset}, run {args.run_name}"])
    card = model_card(args.preset, args.run_name, run, scores, bundled_scores, winner, slope, args.results_dir, sweep)
    (records / f"{stem}.md").write_text(card)
    print(f"records: {records}/{stem}.*")
    if winner and not args.no_int8 and args.assets.resolve() == (ROOT / "assets").resolve():
        env = dict(os.environ, DRN_DATA=str(args.data))
        subprocess.run([sys.executable, str(ROOT / "converters" / "bundle_int8.py"), args.preset], env=env, check=True)
        # the 0.10 dB int8 bound holds for the new weights too? (tests/test_runtimes.py holds it for every bundled
        # preset): the litert-int8 runtime of the bundled file, converted with the ranges just written
        from drn_tf.inference.runtimes import runtime_model
        from drn_tf.models.resolve import load_model_file

        with tempfile.TemporaryDirectory(prefix="drn_int8_") as cache:
            lite = runtime_model(load_model_file(args.assets / f"{args.preset}.keras", scale), "litert-int8",
                                 cache_dir=cache)
            int8 = evaluate(lite, args.data, scale)
        loss = {s: scores[winner][s] - int8[s] for s in SETS}
        print("litert-int8 loss against fp32 (dB): " + ", ".join(f"{s} {v:.3f}" for s, v in loss.items())
              + ("" if max(loss.values()) <= 0.10 else "  ABOVE the 0.10 dB bound: a test will fail"))
    elif winner and args.assets.resolve() == (ROOT / "assets").resolve():
        print(f"then: DRN_DATA={args.data} python converters/bundle_int8.py {args.preset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
