"""A bounded load test of ``drn serve`` on 127.0.0.1: start the server, run N concurrent clients for a
fixed time (each sending small PNGs through V1 ``upscale_bytes``), report errors, p50/p99 latency,
images/s and the server's RSS at start and end, then stop it with SIGTERM.

    python tools/serve_load.py [--preset drn_s_x2] [--runtime keras] [--clients 8] [--seconds 20]
                               [--size 64] [--json OUT.json] [-- EXTRA drn serve OPTIONS]

Every loop is bounded: each client stops at the deadline and after --max-requests requests.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serve_helpers import b64, png_bytes, request, start_server, stop_server  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def client(server, path, bodies, deadline, max_requests, out):
    latencies, errors = [], []
    for i in range(max_requests):
        if time.monotonic() >= deadline:
            break
        t0 = time.perf_counter()
        try:
            status, body = request(server, "POST", path, bodies[i % len(bodies)], timeout=60)
        except OSError as exc:
            status, body = None, str(exc).encode()
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            errors.append(f"{status}: {body[:200]!r}")
    out.append((latencies, errors))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="drn_s_x2")
    p.add_argument("--runtime", default="keras")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--size", type=int, default=64, help="side of the square test images (default 64)")
    p.add_argument("--max-requests", type=int, default=10_000, help="per client (a bound besides the time)")
    p.add_argument("--json", help="write the figures to this file too")
    p.add_argument("serve_args", nargs="*", help="more drn serve options (after --)")
    args = p.parse_args(argv)

    import tempfile

    rng = np.random.default_rng(0)
    bodies = [{"signature_name": "upscale_bytes", "instances": [{"b64": b64(png_bytes(
        rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)))}]} for _ in range(16)]
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        server = start_server(Path(tmp), args.preset, "--runtime", args.runtime, *args.serve_args)
        try:
            path = f"/v1/models/{args.preset}:predict"
            request(server, "POST", path, bodies[0])  # warm-up (first trace), not counted
            rss_start = rss_mib(server.proc.pid)
            results: list = []
            deadline = time.monotonic() + args.seconds
            t0 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(server, path, bodies, deadline, args.max_requests, results))
                       for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=args.seconds + 120)
            wall = time.perf_counter() - t0
            rss_end = rss_mib(server.proc.pid)
        finally:
            stop_server(server)
        exit_code = server.proc.returncode
    latencies = np.array([x for lat, _ in results for x in lat])
    errors = [e for _, err in results for e in err]
    report = {
        "preset": args.preset, "runtime": args.runtime, "clients": args.clients, "seconds": args.seconds,
        "image": f"{args.size}x{args.size} PNG", "requests": int(latencies.size), "errors": len(errors),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        "images_per_s": round(latencies.size / wall, 2), "wall_s": round(wall, 1),
        "rss_start_mib": round(rss_start, 1), "rss_end_mib": round(rss_end, 1), "server_exit_code": exit_code,
    }
    print(json.dumps(report, indent=2))
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if errors or exit_code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
