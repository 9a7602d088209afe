"""The JPEG table of docs/photos.md: bundled models on JPEG-compressed LR, by the protocol.

For each preset, ``drn evaluate --degrade clean,jpeg:95,85,75,50 --data Set5 Set14 --preset P --json``
(the same code, called in-process); the per-preset JSON is kept in ``--cache`` so a rerun only
evaluates what is missing. Prints one markdown table per scale and set: PSNR and gain over bicubic
on the same degraded LR.

    python tools/photo_table.py --presets drn_x2 drn_s_x2 drn_s_x2_photo drn_x4 drn_s_x4 drn_s_x4_photo
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

DEGRADE = "clean,jpeg:95,85,75,50"


def evaluate(preset: str, sets: list[Path], cache: Path) -> dict:
    """The ``drn evaluate --degrade ... --json`` payload of ``preset`` (from the cache when it is there)."""
    out = cache / f"{preset}.json"
    if out.is_file():  # ours, or drn evaluate's --json (the same "degradations" and "scale")
        return dict(json.loads(out.read_text()), preset=preset)
    from drn_tf.core.degrade import parse_degradations
    from drn_tf.inference.evaluation import evaluate_degraded
    from drn_tf.models.resolve import model_scale, resolve

    model = resolve(preset=preset).model
    rows = evaluate_degraded(sets, model_scale(model), model, parse_degradations(DEGRADE), progress=True)
    payload = {"preset": preset, "scale": model_scale(model), "degradations": [r.to_dict() for r in rows]}
    cache.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def tables(payloads: list[dict]) -> str:
    lines = []
    for scale in sorted({p["scale"] for p in payloads}):
        group = [p for p in payloads if p["scale"] == scale]
        set_names = [s["set"] for s in group[0]["degradations"][0]["bicubic"]]
        for si, set_name in enumerate(set_names):
            head = "| input (x%d, %s) | bicubic |" % (scale, set_name) + "".join(
                f" {p['preset']} | gain |" for p in group)
            lines += ["", head, "|---|---:|" + "---:|---:|" * len(group)]
            for di, d in enumerate(group[0]["degradations"]):
                row = f"| {d['input']} | {d['bicubic'][si]['psnr']:.2f} |"
                for p in group:
                    dd = p["degradations"][di]
                    psnr = dd["sets"][si]["psnr"]
                    row += f" {psnr:.2f} | {psnr - dd['bicubic'][si]['psnr']:+.2f} |"
                lines.append(row)
    return "\n".join(lines).strip()


def cpu_text() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags"))
        wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
        return f"{model}, {os.cpu_count()} cores ({' '.join(wanted)})"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", required=True)
    ap.add_argument("--data", default=os.environ.get("DRN_DATA", "../shared/data"),
                    help="data folder with benchmark/Set5 and benchmark/Set14")
    ap.add_argument("--cache", default="runs/photo_table", help="folder of the per-preset JSON results")
    args = ap.parse_args(argv)
    sets = [Path(args.data) / "benchmark" / n for n in ("Set5", "Set14")]
    payloads = [evaluate(p, sets, Path(args.cache)) for p in args.presets]
    print(tables(payloads))
    print(f"\n(drn evaluate --degrade {DEGRADE}; Y-PSNR in dB by the protocol; {cpu_text()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
