"""Throughput of bench-api's engine against plain wrk on nginx's /healthz.

Starts a throwaway nginx on 127.0.0.1, then alternates plain wrk and
``bench_api`` with the same threads and connections several times in the same
run (so both see the same machine load), and writes every figure and the ratio
of the medians to ``results/bench_engine_vs_wrk.json``. Run it with the
project's interpreter: ``.venv/bin/python benchmarks/bench_engine_vs_wrk.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from bench_servers import Nginx  # noqa: E402

from nself_ops.bench.api import bench_api  # noqa: E402


def plain_wrk(url: str, threads: int, connections: int, duration: float) -> float:
    """Requests per second that wrk reports with no script at all."""
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration:g}s",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", default=str(ROOT / "results" / "bench_engine_vs_wrk.json")
    )
    args = parser.parse_args()

    nginx = Nginx()
    try:
        wrk_rps: list[float] = []
        bench_rps: list[float] = []
        saturated: list[bool] = []
        for _ in range(args.rounds):
            wrk_rps.append(
                plain_wrk(
                    nginx.url + "/healthz",
                    args.threads,
                    args.connections,
                    args.duration,
                )
            )
            result = bench_api(
                nginx.url,
                ["GET /healthz"],
                concurrency=args.connections,
                duration=args.duration,
                threads=args.threads,
            )
            bench_rps.append(result["summary"]["throughput_rps"])
            saturated.append(result["summary"]["generator"]["saturated"])
    finally:
        nginx.stop()

    report = {
        "target": "nginx return 200 on 127.0.0.1 /healthz",
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "wrk_rps": wrk_rps,
        "bench_api_rps": bench_rps,
        "bench_api_generator_saturated": saturated,
        "wrk_rps_median": statistics.median(wrk_rps),
        "bench_api_rps_median": statistics.median(bench_rps),
        "ratio": round(statistics.median(bench_rps) / statistics.median(wrk_rps), 4),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if report["ratio"] >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
