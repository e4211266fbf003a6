"""The bench Invoke tasks: bad input and a down environment, then the real stack."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]

BROKEN = """\
name: Broken
steps:
  - name: List
    endpoint: GET /api/products
    weight: heavy
"""


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def bench_dirs(tmp_path, monkeypatch):
    """Results, baselines and scenarios of these tests in a folder of their own."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "broken.yaml").write_text(BROKEN)
    (scenarios / "checkout.yaml").write_text(
        (PROJECT / "bench" / "scenarios" / "checkout.yaml").read_text()
    )
    monkeypatch.setenv("BENCH_RESULTS_PATH", str(tmp_path / "results"))
    monkeypatch.setenv("BENCH_BASELINE_PATH", str(tmp_path / "baseline"))
    monkeypatch.setenv("BENCH_SCENARIOS_PATH", str(scenarios))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bench-api", "--concurrent", "0"],
            "--concurrent must be greater than 0, got 0",
        ),
        (
            ["bench-api", "--duration", "-3"],
            "--duration must be greater than 0, got -3",
        ),
        (["bench-api", "--env", "qa"], "unknown environment 'qa'"),
        (["bench-api", "--format", "xml"], "unknown format 'xml'"),
        (["bench-db", "--read", "--write"], "choose one workload of --read, --write"),
        (["bench-db", "--via", "proxy"], "unknown via 'proxy'"),
        (["bench-db", "--clients", "0"], "--clients must be greater than 0, got 0"),
        (["bench-load", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["bench-compare", "--with", "yesterday"], "unknown comparison 'yesterday'"),
        (["bench-compare"], "no api benchmark runs of environment 'local'"),
        (["bench-baseline-save"], "to save as baseline"),
    ],
)
def test_bad_input_gives_a_clear_message(invoke, bench_dirs, args, message):
    result = invoke(*args)
    assert result.returncode == 2, result
    assert message in result.stderr, result
    assert "Traceback" not in result.output


def test_malformed_scenario_names_file_line_and_field(invoke, bench_dirs):
    result = invoke("bench-load", "--scenario", "broken")
    assert result.returncode == 2, result
    path = bench_dirs / "scenarios" / "broken.yaml"
    assert f"{path}:5: steps[0].weight: must be a number, got 'heavy'" in result.stderr
    assert "Traceback" not in result.output


def test_an_environment_that_is_down_says_so(invoke, bench_dirs):
    if port_in_use(38080):
        pytest.skip("the prod environment's nginx port is in use")
    result = invoke("bench-api", "--env", "prod", "--duration", "1")
    assert result.returncode == 1, result
    assert "environment prod is down" in result.stderr
    assert "invoke up --env prod" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.stack
def test_bench_api_on_the_local_stack(invoke, nself, local_stack, bench_dirs):
    result = invoke(
        "bench-api", "--concurrent", "8", "--duration", "1", "--format", "json"
    )
    assert result.returncode == 0, result
    summary = result.json()
    assert [e["endpoint"] for e in summary["endpoints"]] == [
        "GET /api/health",
        "GET /api/users",
        "GET /api/products",
        "GET /api/products/1",
        "GET /api/orders?user_id=42",
        "POST /api/orders",
    ]
    for row in summary["endpoints"]:
        assert row["requests"] > 0 and row["errors_pct"] == 0.0, row
    assert summary["success_rate"] == 100.0
    runs = list((bench_dirs / "results").glob("*-api-local.json"))
    assert len(runs) == 1 and runs[0].with_suffix(".html").exists()

    table = invoke(
        "bench-api",
        "--endpoint",
        "/api/products",
        "--concurrent",
        "4",
        "--duration",
        "1",
    )
    assert table.returncode == 0, table
    assert "API Benchmark Results" in table.stdout
    assert "GET /api/products " in table.stdout
    assert "GET /api/users" not in table.stdout

    words = nself("bench", "api", "/api/users", "--concurrent", "2", "--duration", "1")
    assert words.returncode == 0, words
    assert "GET /api/users " in words.stdout

    short = nself("bench", "api", "/users", "--concurrent", "2", "--duration", "1")
    assert short.returncode == 0, short
    assert "Endpoint: /users is GET /api/users" in short.stderr
    assert "GET /api/users " in short.stdout

    missing = invoke("bench-api", "--endpoint", "/api/nope", "--duration", "1")
    assert missing.returncode == 2, missing
    assert "unknown endpoint GET /api/nope" in missing.stderr
    unknown = nself("bench", "api", "/nope", "--duration", "1")
    assert unknown.returncode == 2, unknown
    assert "unknown endpoint GET /nope" in unknown.stderr
    assert "known endpoints: GET /api/health, GET /api/users" in unknown.stderr
    assert "POST /api/orders" in unknown.stderr

    saved = invoke("bench-baseline-save")
    assert saved.returncode == 0, saved
    compared = invoke("bench-compare", "--with", "last", "--format", "json")
    # One-second runs hold no whole interval to judge: nothing judged, exit 3.
    assert compared.returncode == 3, compared
    report = json.loads(compared.stdout)
    assert report["judged"] == 0 and "rows" in report
    assert "NOTHING JUDGED" in compared.stderr


@pytest.mark.stack
def test_bench_db_on_the_local_stack(invoke, local_stack, bench_dirs):
    result = invoke(
        "bench-db", "--read", "--clients", "2", "--duration", "2", "--format", "json"
    )
    assert result.returncode == 0, result
    summary = result.json()
    assert summary["tps"] > 0
    assert 0 < summary["p95_ms"] <= summary["p99_ms"]
    assert summary["database"] == "nself_bench"
    assert summary["latency_avg_ms"] > 0


@pytest.mark.stack
def test_bench_db_through_the_stacks_pgbouncer(invoke, local_stack, bench_dirs):
    result = invoke(
        "bench-db",
        "--read",
        "--via",
        "pooler",
        "--clients",
        "4",
        "--duration",
        "2",
        "--format",
        "json",
    )
    assert result.returncode == 0, result
    summary = result.json()
    assert summary["tps"] > 0
    assert summary["database"] == "nself_bench"


@pytest.mark.stack
def test_bench_load_checkout_on_the_local_stack(invoke, local_stack, bench_dirs):
    result = invoke(
        "bench-load",
        "--users",
        "4",
        "--duration",
        "3",
        "--ramp-up",
        "1",
        "--format",
        "json",
    )
    assert result.returncode == 0, result
    summary = result.json()
    assert summary["scenario"] == "Checkout Flow"
    steps = {s["name"]: s for s in summary["steps"]}
    assert set(steps) == {
        "Browse products",
        "View product",
        "Add to cart",
        "Checkout",
        "Payment",
    }
    # Every step of the shipped scenario can succeed on the sample api: real
    # users, products and pending orders, each order paid once.
    for step in summary["steps"]:
        assert step["requests"] > 0, step
        assert step["errors_pct"] == 0.0, step
    assert summary["success_rate"] == 100.0
    assert summary["total_requests"] > 20
