"""Requests per second through nginx on the CPU-bound endpoint with 1, 2 and 3 replicas.

Brings the prod sandbox up in a state folder of its own, scales the api to each count in
turn, drives `GET /api/cpu` through nginx with wrk for a fixed time, and writes the
figures to results/scale_replicas.json. The machine's cores bound the gain: with two
cores, a third replica adds little.

Run: .venv/bin/python benchmarks/bench_scale_replicas.py
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
INVOKE = str(Path(sys.executable).parent / "invoke")
ENV = "prod"
URL = "http://127.0.0.1:38080/api/cpu?n=20000"
DURATION_S = 8
CONNECTIONS = 16


def invoke(*args: str) -> None:
    subprocess.run(
        [INVOKE, *args, "--env", ENV],
        cwd=PROJECT,
        check=True,
        capture_output=True,
        text=True,
    )


def requests_per_second() -> float:
    output = subprocess.run(
        ["wrk", "-t2", "-c%d" % CONNECTIONS, "-d%ds" % DURATION_S, URL],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit("the api answered errors during the run:\n" + output)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="nself-bench-scale-"))
    root.chmod(0o755)
    os.environ["NSELF_STATE_ROOT"] = str(root)
    figures = {}
    try:
        invoke("up")
        for replicas in (1, 2, 3):
            invoke("scale-out", "--service", "api", "--replicas", str(replicas))
            requests_per_second()  # warm-up: connection pools, caches
            figures[str(replicas)] = requests_per_second()
            print("%d replica(s): %.1f requests/s" % (replicas, figures[str(replicas)]))
    finally:
        subprocess.run(
            [INVOKE, "down", "--env", ENV, "--purge"],
            cwd=PROJECT,
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "requests per second through nginx on GET /api/cpu?n=20000",
        "connections": CONNECTIONS,
        "duration_s": DURATION_S,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "rps_by_replicas": figures,
        "speedup_2_vs_1": round(figures["2"] / figures["1"], 2),
        "speedup_3_vs_1": round(figures["3"] / figures["1"], 2),
    }
    out = PROJECT / "results" / "scale_replicas.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("written to %s" % out)


if __name__ == "__main__":
    main()
