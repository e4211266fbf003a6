"""A self-contained HTML report per run: tables plus inline SVG charts.

Two charts per series: the latency distribution (latency against percentile,
the tail spread out) and throughput over time from the per-interval samples.
No scripts, fonts or images are fetched: the file opens anywhere.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

WIDTH, HEIGHT, PAD = 640, 240, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def _nines(p: float) -> float:
    """Position of percentile ``p`` on an axis that gives each nine equal room."""
    return -math.log10(max(1e-4, 1.0 - min(p, 99.99) / 100.0))


def svg_chart(
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]] | None = None,
) -> str:
    """An SVG line chart of named ``(x, y)`` series, scaled to fit."""
    points = [pt for _name, pts in lines for pt in pts]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">'
        f"{html.escape(title)}</text>",
    ]
    if not points:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" '
            'text-anchor="middle">no data</text>'
        )
        return "".join(parts) + "</svg>"
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y1 = max(p[1] for p in points) or 1.0
    x1 = x1 if x1 > x0 else x0 + 1.0
    left, right, top, bottom = PAD, WIDTH - 16, 28, HEIGHT - PAD + 8

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def sy(y: float) -> float:
        return bottom - y / (y1 * 1.05) * (bottom - top)

    parts.append(
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#444"/>'
    )
    for frac in (0.0, 0.5, 1.0):
        value = y1 * frac
        parts.append(
            f'<text x="{left - 4}" y="{sy(value) + 4:.1f}" text-anchor="end" '
            f'font-size="10">{value:,.3g}</text>'
        )
    ticks = x_ticks or [
        (x0, f"{x0:g}"),
        ((x0 + x1) / 2, f"{(x0 + x1) / 2:g}"),
        (x1, f"{x1:g}"),
    ]
    for x, label in ticks:
        if x0 <= x <= x1:
            parts.append(
                f'<text x="{sx(x):.1f}" y="{bottom + 14}" text-anchor="middle" '
                f'font-size="10">{html.escape(label)}</text>'
            )
    parts.append(
        f'<text x="{(left + right) / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
        f'font-size="11">{html.escape(x_label)}</text>'
        f'<text x="12" y="{(top + bottom) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(top + bottom) / 2})">{html.escape(y_label)}</text>'
    )
    for i, (name, pts) in enumerate(lines):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
            f'points="{path}"><title>{html.escape(name)}</title></polyline>'
        )
        parts.append(
            f'<text x="{right - 4}" y="{top + 12 + 12 * i}" text-anchor="end" '
            f'font-size="10" fill="{colour}">{html.escape(name)}</text>'
        )
    return "".join(parts) + "</svg>"


def latency_chart(series: Sequence[tuple[str, Sequence[Sequence[float]]]]) -> str:
    """Latency against percentile for each ``(name, [(p, ms), …])``."""
    lines = [
        (name, [(_nines(p), ms) for p, ms in grid if p < 100]) for name, grid in series
    ]
    ticks = [(_nines(p), f"p{p:g}") for p in (0, 50, 90, 99, 99.9, 99.99)]
    return svg_chart(
        lines,
        title="Latency distribution",
        x_label="percentile",
        y_label="ms",
        x_ticks=ticks,
    )


def throughput_chart(series: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> str:
    """Requests per second over time for each ``(name, samples)``."""
    lines = [(name, [(s["t"], s["rps"]) for s in samples]) for name, samples in series]
    return svg_chart(
        lines, title="Throughput over time", x_label="seconds", y_label="req/s"
    )


def render(record: Mapping[str, Any], table_text: str) -> str:
    """The whole report page for a run record (see ``results.save_run``)."""
    kind = record["kind"]
    details = record["details"]
    if kind == "api":
        grids = [
            (e["endpoint"], e["latency_quantiles_ms"]) for e in details["endpoints"]
        ]
    elif kind == "load":
        grids = [("all steps", details["result"]["latency_quantiles_ms"])]
    else:
        grids = [
            (f"pgbench {details['workload']}", details.get("latency_quantiles_ms", []))
        ]
    samples = [(s["name"], s["samples"]) for s in record["series"]]
    if kind == "load":
        samples = samples[:1]
    title = f"nself bench {kind} — {record['env']} — {record['created_at']}"
    meta = {
        "environment": record["env"],
        "git commit": record.get("git_commit") or "unknown",
        "parameters": json.dumps(record["parameters"], sort_keys=True),
    }
    meta_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in meta.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{font-size:12px}"
        "th{text-align:left;padding-right:1em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{meta_rows}</table>"
        f"<pre>{html.escape(table_text)}</pre>"
        f"<h2>Latency distribution</h2>{latency_chart(grids)}"
        f"<h2>Throughput over time</h2>{throughput_chart(samples)}"
        "</body></html>\n"
    )


def write_report(record_path: Path, record: Mapping[str, Any], table_text: str) -> Path:
    """Write the report beside the run file (same name, ``.html``)."""
    path = record_path.with_suffix(".html")
    path.write_text(render(record, table_text), encoding="utf-8")
    return path
