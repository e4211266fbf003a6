"""The boxed tables the benchmark commands print (the plan's layout)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nself_ops.tables import box


def fmt_int(value: float) -> str:
    """A whole number with thousands separators: ``245,678``."""
    return f"{round(value):,}"


def fmt_ms(value: float | None) -> str:
    """Milliseconds the way the tables show them: ``45ms``, ``4.5ms``, ``0.52ms``."""
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:,.0f}ms"
    if value >= 1:
        return f"{value:.1f}ms"
    return f"{value:.2f}ms"


def fmt_pct(value: float) -> str:
    """A percentage with one decimal: ``0.1%``."""
    return f"{value:.1f}%"


def _grid(
    headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1
) -> list[str]:
    """The first ``left`` columns left-aligned, the rest right-aligned."""
    table = [list(headers)] + [list(r) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    out = []
    for row in table:
        cells = [
            cell.ljust(widths[i]) if i < left else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        out.append("  ".join(cells).rstrip())
    return out


def _generator_lines(generator: Mapping[str, Any]) -> list[str]:
    if not generator.get("saturated"):
        return []
    lines = ["", "Load generator SATURATED: figures show its limit, not the server's"]
    lines += [f"  {reason}" for reason in generator.get("reasons", [])]
    return lines


def api_table(summary: Mapping[str, Any]) -> str:
    """The ``bench-api`` result box, as in the plan's Benchmark Output."""
    head = (
        f"Duration: {summary['duration_s']:g}s | "
        f"Concurrent Users: {summary['concurrency']}"
    )
    generator = summary.get("generator", {})
    if generator.get("target_rate"):
        head += f" | Rate: {fmt_int(generator['target_rate'])} req/s"
    rows = [
        [
            e["endpoint"],
            fmt_int(e["rps"]),
            fmt_ms(e["avg_ms"]),
            fmt_ms(e["p95_ms"]),
            fmt_ms(e["p99_ms"]),
            fmt_pct(e["errors_pct"]),
        ]
        for e in summary["endpoints"]
    ]
    lines = [head, ""]
    lines += _grid(["Endpoint", "RPS", "Avg", "P95", "P99", "Errors"], rows)
    lines += [
        "",
        f"Total Requests: {fmt_int(summary['total_requests'])}",
        f"Success Rate: {fmt_pct(summary['success_rate'])}",
        f"Throughput: {fmt_int(summary['throughput_rps'])} req/s",
    ]
    if generator.get("target_rate"):
        lines.append("Latency counted from each request's intended start")
    lines += _generator_lines(generator)
    return box("API Benchmark Results", lines)


def load_table(summary: Mapping[str, Any]) -> str:
    """The ``bench-load`` result box: one row per scenario step, then totals."""
    head = (
        f"Scenario: {summary['scenario']} | Users: {summary['users']} | "
        f"Duration: {summary['duration_s']:g}s | Ramp-up: {summary['ramp_up_s']:g}s"
    )
    rows = [
        [
            s["name"],
            s["endpoint"],
            fmt_pct(s["share_pct"]),
            fmt_int(s["requests"]),
            fmt_ms(s["avg_ms"]),
            fmt_ms(s["p95_ms"]),
            fmt_ms(s["p99_ms"]),
            fmt_pct(s["errors_pct"]),
        ]
        for s in summary["steps"]
    ]
    lines = [head, ""]
    lines += _grid(
        ["Step", "Endpoint", "Share", "Requests", "Avg", "P95", "P99", "Errors"],
        rows,
        left=2,
    )
    lines += [
        "",
        f"Total Requests: {fmt_int(summary['total_requests'])}",
        f"Success Rate: {fmt_pct(summary['success_rate'])}",
        f"Throughput: {fmt_int(summary['throughput_rps'])} req/s",
        f"Latency: avg {fmt_ms(summary['avg_ms'])}, P95 {fmt_ms(summary['p95_ms'])}, "
        f"P99 {fmt_ms(summary['p99_ms'])}",
    ]
    lines += _generator_lines(summary.get("generator", {}))
    return box("Load Test Results", lines)


def db_table(summary: Mapping[str, Any]) -> str:
    """The ``bench-db`` result box."""
    lines = [
        f"Workload: {summary['workload']} | Clients: {summary['clients']} | "
        f"Duration: {summary['duration_s']:g}s | Via: {summary['via']}"
        + (" | new connection per transaction" if summary.get("connect") else ""),
        "",
        f"Transactions: {fmt_int(summary['transactions'])}"
        + (f" ({fmt_int(summary['failed'])} failed)" if summary.get("failed") else ""),
        f"TPS: {summary['tps']:,.1f}",
        f"Latency: avg {fmt_ms(summary['latency_avg_ms'])}, "
        f"P95 {fmt_ms(summary['p95_ms'])}, P99 {fmt_ms(summary['p99_ms'])}",
    ]
    return box("Database Benchmark Results", lines)


def compare_table(report: Mapping[str, Any]) -> str:
    """The ``bench-compare`` box: per endpoint and metric, the delta and verdict."""
    rows = []
    for row in report["rows"]:
        rows.append(
            [
                row["endpoint"],
                row["metric"],
                _fmt_value(row["metric"], row["before"]),
                _fmt_value(row["metric"], row["after"]),
                "-" if row["delta_pct"] is None else f"{row['delta_pct']:+.1f}%",
                "-" if row["p_value"] is None else f"{row['p_value']:.3g}",
                row["verdict"],
            ]
        )
    lines = [
        f"Before: {report['before']['label']}",
        f"After:  {report['after']['label']}",
        f"Threshold: {report['threshold_pct']:g}% | Significance: p < "
        f"{report['alpha']:g} (Mann-Whitney U over per-interval samples)",
        "",
    ]
    warnings = report.get("warnings") or []
    lines += [f"Warning: {w}" for w in warnings] + ([""] if warnings else [])
    lines += _grid(
        ["Endpoint", "Metric", "Before", "After", "Delta", "p", "Verdict"],
        rows,
        left=2,
    )
    lines += ["", report["conclusion"]]
    return box("Benchmark Comparison", lines)


def _fmt_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric.endswith("_ms"):
        return fmt_ms(value)
    return fmt_int(value)
