"""Cold start of `drn upscale` on one 256x256 PNG, an older tree against this checkout, interleaved.

Usage:
    git worktree add --detach /tmp/before 984e6ef
    python tools/coldstart.py /tmp/before [N] [--runtimes litert-int8 litert keras] [--refused] [--after TREE]

Each run is a new process, `python -m drn_tf.cli upscale img.png --runtime R -o out.png` (the tree on
PYTHONPATH), timed for wall time and CPU time (user+sys of the child and its threads); the trees and the
runtimes take turns in every round, so both see the same machine load. Files a runtime converts on first
use are made by one untimed run of each tree and runtime first (the user cache, as in everyday use), and so
is the bytecode of every module imported (``PYTHONPYCACHEPREFIX`` in the scratch folder; an installed
package has its bytecode): the timed runs are what a user sees from the second run on. ``--refused``: also "existing output refused" (the
checks before any model loads). Prints a markdown table of the medians (and minima) over N rounds (default
5), with the machine, its CPU flags and the load average around the runs: wall times on a shared machine
move with its load, CPU times much less.
"""
import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "?", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("?", "", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    return model, [f for f in FLAGS if f in flags]


def run(root: Path, args, work: Path) -> tuple[float, float, int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DRN_VERBOSE", "PYTHONDONTWRITEBYTECODE")}
    # bytecode cached, as an installed package has it (in a scratch folder: nothing written into the trees)
    env.update(PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2", PYTHONPYCACHEPREFIX=str(work / "pycache"))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "drn_tf.cli", "upscale", *args], cwd=work, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), p.returncode, p.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path, help="the older tree (git worktree add --detach /tmp/before COMMIT)")
    ap.add_argument("n", type=int, nargs="?", default=5, help="rounds (default 5)")
    ap.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1],
                    help="the newer tree (default: this checkout; a worktree of a commit keeps edits in progress out)")
    ap.add_argument("--runtimes", nargs="+", default=["litert-int8", "litert", "keras"])
    ap.add_argument("--refused", action="store_true", help='also "existing output refused"')
    a = ap.parse_args()
    trees = {"before": a.before.resolve(), "after": a.after.resolve()}
    work = Path(tempfile.mkdtemp(prefix="drn-coldstart-"))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(work / "img.png")
    (work / "exists.png").write_bytes(b"x")
    cases = {f"--runtime {r}": ["img.png", "--runtime", r, "-o", "out.png", "--overwrite", "-q"] for r in a.runtimes}
    if a.refused:
        cases["existing output refused"] = ["img.png", "-o", "exists.png", "-q"]
    for case, args in cases.items():  # first use: conversions into the user cache, untimed
        for label, root in trees.items():
            wall, _, rc, err = run(root, args, work)
            if (rc == 0) == ("refused" in case):
                print(f"{label} {case}: exit {rc}\n{err[-2000:]}", file=sys.stderr)
                return 1
    load = [os.getloadavg()[0]]
    res: dict = {}
    for _ in range(a.n):
        for case, args in cases.items():
            for label, root in trees.items():
                wall, cpu_s, rc, _ = run(root, args, work)
                res.setdefault((case, label), []).append((wall, cpu_s))
        load.append(os.getloadavg()[0])
    model, flags = cpu()
    print(f"`drn upscale img.png` (256x256 RGB PNG, x2, the default preset drn_x2), {a.n} rounds interleaved; "
          f"{model}, {len(os.sched_getaffinity(0))} cores, flags {', '.join(flags) or 'none of ' + ', '.join(FLAGS)}; "
          f"load average (1 min) {min(load):.1f}-{max(load):.1f}; before: {a.before}, after: {a.after}\n")
    print("| command | wall before (s) | wall after (s) | CPU before (s) | CPU after (s) |")
    print("|---|---:|---:|---:|---:|")

    def cell(v, i):
        xs = [x[i] for x in v]
        return f"{statistics.median(xs):.2f} (min {min(xs):.2f})"

    for case in cases:
        b, f = res[(case, "before")], res[(case, "after")]
        print(f"| `{case}` | {cell(b, 0)} | {cell(f, 0)} | {cell(b, 1)} | {cell(f, 1)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
