"""What each bench task does once its input is resolved: run, save, report.

``tasks.py`` resolves the environment (URL, endpoints, database) and calls
these; each returns the public summary, the table text, and where the result
file and its HTML report were written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import api, compare, db, html, load, render, results, scenario
from .engine import HttpRequest


@dataclass
class Outcome:
    """A finished bench command: its JSON summary, table and files."""

    summary: dict[str, Any]
    text: str
    record_path: Path | None = None
    report_path: Path | None = None


def _save(
    kind: str,
    env: str,
    *,
    parameters: Mapping[str, Any],
    summary: dict[str, Any],
    details: Mapping[str, Any],
    text: str,
) -> tuple[Path, Path]:
    path = results.save_run(kind, env, parameters, summary, details)
    record = results.read_run(path)
    return path, html.write_report(path, record, text)


def run_api(
    env: str,
    base_url: str,
    endpoints: Sequence[str | HttpRequest | dict[str, Any]],
    *,
    concurrency: int,
    duration: float,
    rate: float | None = None,
    known: Sequence[str] = (),
    sample_interval: float = 1.0,
    launcher: Sequence[str] = (),
) -> Outcome:
    """``bench-api``: load the endpoints, save the run and its report.

    ``launcher`` is passed to the engine (see ``engine._run_wrk``).
    """
    out = api.bench_api(
        base_url,
        endpoints,
        concurrency=concurrency,
        duration=duration,
        rate=rate,
        known=known,
        sample_interval=sample_interval,
        launcher=launcher,
    )
    summary = out["summary"]
    text = render.api_table(summary)
    parameters = {
        "url": base_url,
        "endpoints": [e["endpoint"] for e in summary["endpoints"]],
        "concurrency": concurrency,
        "duration": duration,
        "rate": rate,
    }
    path, report = _save(
        "api", env, parameters=parameters, summary=summary, details=out, text=text
    )
    return Outcome(summary, text, path, report)


def run_load(
    env: str,
    base_url: str,
    name: str,
    *,
    fill: Mapping[str, Sequence[Any]] | None = None,
    users: int | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
    progress: bool | None = None,
    sample_interval: float = 1.0,
    scenarios_path: Path | None = None,
) -> Outcome:
    """``bench-load``: run a scenario by name, save the run and its report."""
    sc = scenario.load(scenario.find(name, scenarios_path))
    out = load.bench_load(
        base_url,
        sc,
        fill=fill,
        users=users,
        duration=duration,
        ramp_up=ramp_up,
        progress=progress,
        sample_interval=sample_interval,
    )
    summary = out["summary"]
    text = render.load_table(summary)
    parameters = {
        "url": base_url,
        "scenario": name,
        "users": summary["users"],
        "duration": summary["duration_s"],
        "ramp_up": summary["ramp_up_s"],
    }
    path, report = _save(
        "load", env, parameters=parameters, summary=summary, details=out, text=text
    )
    return Outcome(summary, text, path, report)


def run_db(
    env: str,
    target: db.DbTarget,
    *,
    workload: str,
    clients: int,
    duration: float,
    connect: bool,
    via: str,
    init_target: db.DbTarget | None = None,
    protected: Sequence[str] = (),
    database: str = db.DEFAULT_DATABASE,
) -> Outcome:
    """``bench-db``: pgbench in the scratch database, saved with its report."""
    out = db.bench_db(
        target,
        workload=workload,
        clients=clients,
        duration=duration,
        connect=connect,
        via=via,
        init_target=init_target,
        protected=protected,
        database=database,
    )
    summary = {k: v for k, v in out.items() if k not in ("samples",)}
    summary.pop("latency_quantiles_ms", None)
    text = render.db_table(summary)
    parameters = {
        "host": target.host,
        "port": target.port,
        "workload": workload,
        "clients": clients,
        "duration": duration,
        "connect": connect,
        "via": via,
    }
    path, report = _save(
        "db", env, parameters=parameters, summary=summary, details=out, text=text
    )
    return Outcome(summary, text, path, report)


def save_baseline(env: str) -> Outcome:
    """``bench-baseline-save``: the latest run of each kind becomes the baseline."""
    saved = results.save_baseline(env)
    lines = [f"Saved {p}" for p in saved]
    return Outcome({"saved": [str(p) for p in saved]}, "\n".join(lines))


def run_compare(
    env: str,
    *,
    with_: str = "baseline",
    kind: str = "api",
    threshold_pct: float = compare.DEFAULT_THRESHOLD_PCT,
    alpha: float = compare.DEFAULT_ALPHA,
) -> Outcome:
    """``bench-compare``: the report; its ``regression`` decides the exit code."""
    report = compare.compare(
        env, kind=kind, with_=with_, threshold_pct=threshold_pct, alpha=alpha
    )
    return Outcome(report, render.compare_table(report))
