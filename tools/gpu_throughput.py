"""Training work done per GPU run, from the ``<run>_<preset>.json`` records of train_gpu.py (the first two
GPU runs, ``gpu1`` and ``gpu2``) and of ``drn train`` (``run.json``, as ``training/bundle_run.py`` files it
under the run's ``--run-name``).

For each run (the presets trained side by side on one GPU): patches/s per process, the bf16 training
work it stands for (patches/s x 6 x multiply-adds of one LR patch: forward 2 FLOPs per MAC, backward
twice the forward), and the run's total. Then what one preset alone would get in ``--minutes`` at the
mean of the runs' totals: the GPU's throughput is shared, so splitting it splits the patches.

    python tools/gpu_throughput.py [--minutes 9] [--preset drn_x2] [assets/training/*.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("records", nargs="*", help="JSON records (default: the training records in assets/training/)")
    p.add_argument("--minutes", type=float, default=9.0, help="training minutes of the projection")
    p.add_argument("--preset", default="drn_x2", help="preset of the projection")
    args = p.parse_args(argv)

    from drn_tf.models.analysis import count_macs
    from drn_tf.models.presets import get_preset

    def flops_per_patch(preset: str, patch: int) -> float:
        return 6.0 * count_macs(get_preset(preset)["config"], patch, patch)

    files = [Path(f) for f in args.records] or sorted((ROOT / "assets" / "training").glob("*_*.json"))
    runs = defaultdict(list)
    for f in files:
        record = json.loads(f.read_text())
        if isinstance(record, dict) and record.get("preset") and record.get("patches_per_s"):  # a training record
            suffix = "_" + record["preset"]  # RUN-NAME_PRESET.json; a run name may hold "_" itself
            runs[f.stem[: -len(suffix)] if f.stem.endswith(suffix) else f.stem.split("_", 1)[0]].append(record)
    totals, patch = [], 48
    for run, records in sorted(runs.items()):
        total = 0.0
        for r in sorted(records, key=lambda r: r["preset"]):
            patch = r.get("patch_size") or r.get("args", {}).get("patch", 48)  # run.json of drn train, or train_gpu.py
            tflops = r["patches_per_s"] * flops_per_patch(r["preset"], patch) / 1e12
            total += tflops
            print(f"{run} {r['preset']:9s} {r['patches_per_s']:8.1f} patches/s of {patch}x{patch}  {tflops:6.1f} TFLOP/s")
        totals.append(total)
        print(f"{run} total {total:.1f} TFLOP/s ({len(records)} processes on {records[0].get('device', '?')})")
    if not totals:
        print("no records", file=sys.stderr)
        return 1
    mean = sum(totals) / len(totals)
    patches = mean * 1e12 * args.minutes * 60 / flops_per_patch(args.preset, patch)
    print(f"{args.preset} alone for {args.minutes:g} minutes at {mean:.0f} TFLOP/s: {patches / 1e6:.1f} M patches "
          f"of {patch}x{patch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
