"""``bench-compare``: is the latest run worse than the last one or the baseline?

Each series (endpoint, step, workload) is judged on its per-interval samples
with a Mann–Whitney U test, not on two means: a change counts only when the
two sets of samples differ significantly *and* the medians moved by more than
the threshold. That keeps run-to-run noise of one build from failing CI while
a real slowdown still does.

Two runs are comparable only when they loaded the server the same way: the
same concurrency and the same mode (closed loop, or the same fixed rate).
When those differ every row is ``not comparable``; a series only one of the
runs has is ``not comparable`` too. Each such difference is a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import results, stats
from .errors import BenchInputError

DEFAULT_THRESHOLD_PCT = 10.0
DEFAULT_ALPHA = 0.01
MIN_SAMPLES = 3
WITH_CHOICES = ("last", "baseline")

#: Exit code of bench-compare when no row could be judged at all.
EXIT_NOT_JUDGED = 3

#: Verdicts that are a judgement (the rest say why there is none).
JUDGED = ("regression", "improved", "no change", "not significant")
NOT_COMPARABLE = "not comparable"

#: metric → (sample key, whether higher is better)
METRICS = {"throughput_rps": ("rps", True), "latency_avg_ms": ("avg_ms", False)}


def _values(samples: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(s[key]) for s in samples if s.get(key) is not None]


def judge(
    before: Sequence[float],
    after: Sequence[float],
    *,
    higher_is_better: bool,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
) -> dict[str, Any]:
    """Compare two sample sets of one metric; the verdict and its figures.

    Verdicts: ``regression`` and ``improved`` (significant and beyond the
    threshold), ``no change``, ``not significant`` (beyond the threshold but
    within noise) and ``too few samples``.
    """
    if len(before) < MIN_SAMPLES or len(after) < MIN_SAMPLES:
        return {
            "before": stats.median(before) if before else 0.0,
            "after": stats.median(after) if after else 0.0,
            "delta_pct": 0.0,
            "p_value": 1.0,
            "verdict": "too few samples",
        }
    b, a = stats.median(before), stats.median(after)
    delta = 100.0 * (a - b) / b if b else 0.0
    _u, p = stats.mann_whitney_u(before, after)
    worse = -delta if higher_is_better else delta
    if abs(delta) <= threshold_pct:
        verdict = "no change"
    elif p >= alpha:
        verdict = "not significant"
    elif worse > 0:
        verdict = "regression"
    else:
        verdict = "improved"
    return {
        "before": b,
        "after": a,
        "delta_pct": round(delta, 2),
        "p_value": p,
        "verdict": verdict,
    }


def load_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """How a run loaded the server: the settings two runs must share.

    ``concurrency`` (connections, virtual users or pgbench clients) and
    ``mode``; for scenarios the scenario, for pgbench the workload's path.
    """
    params = record.get("parameters") or {}
    kind = record.get("kind")
    if kind == "api":
        rate = params.get("rate")
        return {
            "concurrency": params.get("concurrency"),
            "mode": f"rate {rate:g} req/s" if rate else "closed",
        }
    if kind == "load":
        return {
            "concurrency": params.get("users"),
            "mode": "closed",
            "scenario": params.get("scenario"),
        }
    if kind == "db":
        via = params.get("via") or "direct"
        return {
            "concurrency": params.get("clients"),
            "mode": via
            + (", new connection per transaction" if params.get("connect") else ""),
        }
    return {}


def _shown(value: Any) -> str:
    return "unknown" if value is None else str(value)


def differences(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[list[str], bool]:
    """Warnings about how the two runs differ, and whether that rules out a verdict.

    Different concurrency or mode make every row not comparable; series that
    only one run has are named (their rows are not comparable either).
    """
    warnings = []
    old, new = load_settings(before), load_settings(after)
    for key in dict.fromkeys([*old, *new]):
        if old.get(key) != new.get(key):
            warnings.append(
                f"the runs differ in {key}: {_shown(old.get(key))} before, "
                f"{_shown(new.get(key))} after; they are not comparable"
            )
    run_wide = bool(warnings)
    names_before = [s["name"] for s in before.get("series", [])]
    names_after = [s["name"] for s in after.get("series", [])]
    only_before = [n for n in names_before if n not in names_after]
    only_after = [n for n in names_after if n not in names_before]
    if only_before:
        warnings.append(
            "only the run before has " + ", ".join(only_before) + ": not comparable"
        )
    if only_after:
        warnings.append(
            "only the run after has " + ", ".join(only_after) + ": not comparable"
        )
    return warnings, run_wide


def _not_comparable(name: str, metric: str, samples: list[int]) -> dict[str, Any]:
    return {
        "before": None,
        "after": None,
        "delta_pct": None,
        "p_value": None,
        "verdict": NOT_COMPARABLE,
        "endpoint": name,
        "metric": metric,
        "samples": samples,
    }


def _label(record: Mapping[str, Any], path: Path) -> str:
    commit = (record.get("git_commit") or "unknown commit")[:12]
    return f"{path.name} ({record.get('created_at', '?')}, {commit})"


def compare_records(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
) -> list[dict[str, Any]]:
    """Rows per series and metric: judged where the runs are comparable.

    A series only one run has gives one ``not comparable`` row; when the runs'
    concurrency or mode differ, every row is ``not comparable``.
    """
    if not 0 < alpha < 1:
        raise BenchInputError(f"significance level must be within 0 and 1, got {alpha}")
    if threshold_pct <= 0:
        raise BenchInputError(f"threshold must be above 0%, got {threshold_pct}")
    _warnings, run_wide = differences(before, after)
    old = {s["name"]: s for s in before["series"]}
    new = {s["name"] for s in after["series"]}
    rows = []
    for series in after["series"]:
        if series["name"] not in old:
            rows.append(
                _not_comparable(series["name"], "-", [0, len(series["samples"])])
            )
            continue
        for metric, (key, higher) in METRICS.items():
            b = _values(old[series["name"]]["samples"], key)
            a = _values(series["samples"], key)
            # Throughput is always measured; latency only where samples carry it.
            if not b and not a and key != "rps":
                continue
            if run_wide:
                rows.append(_not_comparable(series["name"], metric, [len(b), len(a)]))
                continue
            row = judge(
                b, a, higher_is_better=higher, threshold_pct=threshold_pct, alpha=alpha
            )
            row["endpoint"] = series["name"]
            row["metric"] = metric
            row["samples"] = [len(b), len(a)]
            rows.append(row)
    for series in before["series"]:
        if series["name"] not in new:
            rows.append(
                _not_comparable(series["name"], "-", [len(series["samples"]), 0])
            )
    return rows


def compare(
    env: str,
    *,
    kind: str = "api",
    with_: str = "baseline",
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    alpha: float = DEFAULT_ALPHA,
    results_path: Path | None = None,
    baseline_path: Path | None = None,
) -> dict[str, Any]:
    """Compare the latest ``kind`` run in ``env`` with the previous one or the baseline.

    The report's ``regression`` is true when any row is a regression, and
    ``judged`` counts the rows that could be judged at all; callers exit 1 on
    a regression and ``EXIT_NOT_JUDGED`` when nothing was judged. ``warnings``
    says how the runs differ.
    """
    results.check_kind(kind)
    if with_ not in WITH_CHOICES:
        raise BenchInputError(
            f"unknown --with {with_!r}; valid: {', '.join(WITH_CHOICES)}"
        )
    runs = results.list_runs(results_path, kind, env)
    if not runs:
        raise BenchInputError(
            f"no {kind} benchmark runs of environment {env!r} to compare; "
            f"run bench-{kind} first"
        )
    after_path = runs[-1]
    if with_ == "last":
        if len(runs) < 2:
            raise BenchInputError(
                f"--with last needs two {kind} runs of environment {env!r}, "
                f"found {len(runs)}"
            )
        before_path = runs[-2]
    else:
        before_path = results.baseline_path(kind, env, baseline_path)
        if not before_path.is_file():
            raise BenchInputError(
                f"no {kind} baseline for environment {env!r} at {before_path}; "
                "save one with bench-baseline-save"
            )
    before = results.read_run(before_path)
    after = results.read_run(after_path)
    rows = compare_records(before, after, threshold_pct=threshold_pct, alpha=alpha)
    warnings, run_wide = differences(before, after)
    regressions = [r for r in rows if r["verdict"] == "regression"]
    judged = sum(1 for r in rows if r["verdict"] in JUDGED)
    if not judged:
        if run_wide:
            why = "the runs loaded the server differently"
        elif not any(r["verdict"] == "too few samples" for r in rows):
            why = "the two runs share no endpoint"
        else:
            why = (
                f"too few samples (at least {MIN_SAMPLES} intervals in each run "
                "are needed; run longer)"
            )
        conclusion = f"NOTHING JUDGED: {why}."
    elif regressions:
        names = ", ".join(
            sorted({f"{r['endpoint']} {r['metric']}" for r in regressions})
        )
        conclusion = f"REGRESSION beyond {threshold_pct:g}%: {names}"
    else:
        conclusion = f"No significant regression beyond {threshold_pct:g}%."
    return {
        "kind": kind,
        "env": env,
        "with": with_,
        "threshold_pct": threshold_pct,
        "alpha": alpha,
        "before": {"file": str(before_path), "label": _label(before, before_path)},
        "after": {"file": str(after_path), "label": _label(after, after_path)},
        "rows": rows,
        "warnings": warnings,
        "judged": judged,
        "regression": bool(regressions),
        "conclusion": conclusion,
    }
