"""Unit tests of the tables and the HTML report."""

from __future__ import annotations

from nself_ops.bench import html, render

SUMMARY = {
    "duration_s": 60,
    "concurrency": 100,
    "endpoints": [
        {
            "endpoint": "GET /api/users",
            "requests": 74040,
            "rps": 1234.0,
            "avg_ms": 45.2,
            "p50_ms": 40.0,
            "p95_ms": 120.0,
            "p99_ms": 250.0,
            "errors_pct": 0.1,
        },
        {
            "endpoint": "GET /api/health",
            "requests": 614040,
            "rps": 10234.0,
            "avg_ms": 5.0,
            "p50_ms": 4.0,
            "p95_ms": 12.0,
            "p99_ms": 25.0,
            "errors_pct": 0.0,
        },
    ],
    "total_requests": 245678,
    "success_rate": 99.8,
    "throughput_rps": 4094.0,
    "generator": {"saturated": False, "reasons": []},
}


def test_api_table_has_the_plans_layout():
    text = render.api_table(SUMMARY)
    lines = text.splitlines()
    assert lines[0].startswith("┌") and lines[0].endswith("┐")
    assert lines[1] == "│ API Benchmark Results" + " " * (len(lines[0]) - 24) + "│"
    assert lines[2].startswith("├") and lines[-1].startswith("└")
    assert "│ Duration: 60s | Concurrent Users: 100" in lines[3]
    header = next(line for line in lines if "Endpoint" in line)
    assert header.split() == [
        "│",
        "Endpoint",
        "RPS",
        "Avg",
        "P95",
        "P99",
        "Errors",
        "│",
    ]
    row = next(line for line in lines if "GET /api/users" in line)
    assert row.split()[3:9] == ["1,234", "45ms", "120ms", "250ms", "0.1%", "│"]
    assert "│ Total Requests: 245,678" in text
    assert "│ Success Rate: 99.8%" in text
    assert "│ Throughput: 4,094 req/s" in text
    assert len({len(line) for line in lines}) == 1
    assert "SATURATED" not in text


def test_api_table_says_when_the_generator_saturated():
    summary = dict(
        SUMMARY,
        generator={"saturated": True, "reasons": ["GET /x: wrk used 99% CPU"]},
    )
    text = render.api_table(summary)
    assert "Load generator SATURATED" in text
    assert "GET /x: wrk used 99% CPU" in text


def test_number_formats():
    assert render.fmt_ms(0.523) == "0.52ms"
    assert render.fmt_ms(4.54) == "4.5ms"
    assert render.fmt_ms(1234.4) == "1,234ms"
    assert render.fmt_int(4094.4) == "4,094"
    assert render.fmt_pct(99.84) == "99.8%"


def test_html_report_is_self_contained_with_two_charts():
    record = {
        "kind": "api",
        "env": "local",
        "created_at": "2026-01-01T00:00:00+00:00",
        "git_commit": "abc",
        "parameters": {"concurrency": 10},
        "series": [
            {
                "name": "GET /a",
                "samples": [{"t": 0, "rps": 10.0}, {"t": 1, "rps": 12.0}],
            }
        ],
        "details": {
            "endpoints": [
                {
                    "endpoint": "GET /a",
                    "latency_quantiles_ms": [[50, 1.0], [99, 3.0], [100, 9.0]],
                }
            ]
        },
    }
    page = html.render(record, render.api_table(SUMMARY))
    assert page.count("<svg") == 2
    assert "<polyline" in page
    assert "Latency distribution" in page and "Throughput over time" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "API Benchmark Results" in page
