"""Result files: one JSON file per run, a baseline per kind and environment.

A run file holds the environment, the parameters, the git commit, the public
summary and, per series (an endpoint, a scenario step, a pgbench workload),
the per-interval samples the comparison tests.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nself_ops import PROJECT_DIR

from . import project_path
from .errors import BenchInputError

log = logging.getLogger("nself.bench")

DEFAULT_RESULTS_PATH = "bench/results"
DEFAULT_BASELINE_PATH = "bench/baseline"
KINDS = ("api", "db", "load")
FORMAT = 1

_NAME = re.compile(r"^(\d{8}T\d{6}\d{6}Z)-(api|db|load)-([A-Za-z0-9_-]+)\.json$")


def results_dir() -> Path:
    """BENCH_RESULTS_PATH, or ``bench/results``, relative to the project folder."""
    return project_path("BENCH_RESULTS_PATH", DEFAULT_RESULTS_PATH)


def baseline_dir() -> Path:
    """BENCH_BASELINE_PATH, or ``bench/baseline``, relative to the project folder."""
    return project_path("BENCH_BASELINE_PATH", DEFAULT_BASELINE_PATH)


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The project's checked-out commit, with ``-dirty`` when tracked files changed.

    ``cwd`` defaults to the project folder: the commit is that of the code that
    ran, whatever the current directory.
    """
    cwd = PROJECT_DIR if cwd is None else cwd
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def check_kind(kind: str) -> str:
    """``kind`` if it is api, db or load, else ``BenchInputError``."""
    if kind not in KINDS:
        raise BenchInputError(
            f"unknown benchmark kind {kind!r}; valid: {', '.join(KINDS)}"
        )
    return kind


def series_of(kind: str, details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The named sample series a run contributes to comparisons."""
    if kind == "api":
        return [
            {
                "name": e["endpoint"],
                "sample_interval_s": e["sample_interval_s"],
                "samples": e["samples"],
            }
            for e in details["endpoints"]
        ]
    if kind == "load":
        result = details["result"]
        out = [
            {
                "name": "total",
                "sample_interval_s": result["sample_interval_s"],
                "samples": [
                    {"t": s["t"], "rps": s["rps"], "avg_ms": s.get("avg_ms")}
                    for s in result["samples"]
                ],
            }
        ]
        interval = result["sample_interval_s"]
        for step in result["steps"]:
            rows = []
            for s in result["samples"]:
                cell = s.get("steps", {}).get(step["name"])
                if cell:
                    rows.append(
                        {
                            "t": s["t"],
                            "rps": cell["requests"] / interval,
                            "avg_ms": cell["avg_ms"],
                        }
                    )
            out.append(
                {"name": step["name"], "sample_interval_s": interval, "samples": rows}
            )
        return out
    if kind == "db":
        return [
            {
                "name": f"pgbench {details['workload']}",
                "sample_interval_s": details["sample_interval_s"],
                "samples": details["samples"],
            }
        ]
    raise BenchInputError(f"unknown benchmark kind {kind!r}; valid: {', '.join(KINDS)}")


def save_run(
    kind: str,
    env: str,
    parameters: Mapping[str, Any],
    summary: Mapping[str, Any],
    details: Mapping[str, Any],
    *,
    directory: Path | None = None,
) -> Path:
    """Write a run file and return its path."""
    check_kind(kind)
    folder = directory or results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    record = {
        "format": FORMAT,
        "kind": kind,
        "env": env,
        "created_at": now.isoformat(timespec="microseconds"),
        "git_commit": git_commit(),
        "parameters": dict(parameters),
        "summary": summary,
        "series": series_of(kind, details),
        "details": details,
    }
    path = folder / f"{stamp}-{kind}-{env}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    log.info("saved %s", path)
    return path


def list_runs(
    directory: Path | None = None, kind: str | None = None, env: str | None = None
) -> list[Path]:
    """Run files, oldest first, optionally of one kind and environment."""
    folder = directory or results_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if not match:
            continue
        if kind and match.group(2) != kind:
            continue
        if env and match.group(3) != env:
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.name)


def read_run(path: Path) -> dict[str, Any]:
    """A run file's record, or ``BenchInputError`` when it cannot be read."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchInputError(f"cannot read result file {path}: {exc}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise BenchInputError(f"{path} is not a benchmark result file")
    return record


def baseline_path(kind: str, env: str, directory: Path | None = None) -> Path:
    """Where the baseline of ``kind`` in ``env`` lives."""
    return (directory or baseline_dir()) / f"baseline-{check_kind(kind)}-{env}.json"


def save_baseline(
    env: str,
    kinds: Sequence[str] = KINDS,
    results: Path | None = None,
    baselines: Path | None = None,
) -> list[Path]:
    """Copy the latest run of each kind in ``env`` to the baseline folder.

    Raises ``BenchInputError`` when there is no run at all to copy.
    """
    saved = []
    for kind in kinds:
        runs = list_runs(results, kind, env)
        if not runs:
            continue
        target = baseline_path(kind, env, baselines)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(runs[-1], target)
        saved.append(target)
    if not saved:
        where = results or results_dir()
        raise BenchInputError(
            f"no benchmark runs of environment {env!r} in {where} to save as baseline; "
            "run bench-api, bench-db or bench-load first"
        )
    return saved
