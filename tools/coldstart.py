"""Cold start of `drn upscale` on one 256x256 PNG, an older tree against this checkout, interleaved.

Usage: git worktree add /tmp/before d116088 && python tools/coldstart.py /tmp/before [N]

Wall time and CPU time (user+sys of the child) per run of `python -m drn_tf.cli upscale`, for
"upscale one image" and "existing output refused"; min and median over N runs (default 5). The figures
in README "Using it" (start-up) came from this on the 2-core AMD EPYC.
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

before = Path(sys.argv[1]).resolve()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 5
trees = {"before": before, "after": Path(__file__).resolve().parents[1]}
work = Path(tempfile.mkdtemp(prefix="drn-coldstart-"))
Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(work / "img.png")
(work / "exists.png").write_bytes(b"x")
cases = {"upscale 256x256": (["img.png", "-o", "out.png"], True),
         "existing output refused": (["img.png", "-o", "exists.png"], False)}
res = {}
for _ in range(N):
    for case, (args, remove) in cases.items():
        for label, root in trees.items():
            if remove:
                (work / "out.png").unlink(missing_ok=True)
            env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "drn_tf.cli", "upscale", *args], cwd=work, env=env,
                               capture_output=True, text=True)
            wall = time.perf_counter() - t
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
            res.setdefault((case, label), []).append((wall, cpu, p.returncode))
for (case, label), v in res.items():
    w = [x[0] for x in v]
    c = [x[1] for x in v]
    print(f"{case:24s} {label:6s} rc={sorted({x[2] for x in v})} wall min {min(w):5.2f} med {statistics.median(w):5.2f}"
          f"  cpu min {min(c):5.2f} med {statistics.median(c):5.2f}  (n={len(v)})")
print("load average:", os.getloadavg())
