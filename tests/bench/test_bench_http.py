"""Integration tests of the HTTP engine against real servers on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from bench_servers import REALTIME, closed_port_url

from nself_ops.bench import api, engine, stats
from nself_ops.bench.errors import BenchInputError, TargetDownError

DELAY_MS = 50.0


def within(value_ms: float, target_ms: float) -> bool:
    """A reported figure within 5% + 1 ms of the target."""
    return abs(value_ms - target_ms) <= target_ms * 0.05 + 1.0


def check_against_injected_delay(server, row: dict) -> None:
    """The engine's P50 and P95 match the delay the server injected.

    This machine is a shared virtual machine, and now and then its CPUs stall
    for milliseconds, stretching the server's 50 ms sleeps too. The server
    records each delay as it actually applied it (request read to answer
    sent), so the engine is judged against the delay that really happened at
    each percentile, and that delay in turn against the 50 ms asked for at the
    median.
    """
    applied = server.applied_ms()
    assert len(applied) >= row["requests"] - 8
    assert within(stats.percentile(applied, 50), DELAY_MS), applied
    assert within(row["p50_ms"], DELAY_MS), row
    for key, p in (("p50_ms", 50), ("p95_ms", 95)):
        truth = stats.percentile(applied, p)
        assert within(row[key], truth), (key, row[key], truth)
        assert row[key] >= truth - 0.5, (key, row[key], truth)


# Four connections: the test server is Python, and answers that fall due at the
# same moment queue for its interpreter lock; with many connections in step that
# queue, not the generator, would stretch the tail.
def test_closed_loop_percentiles_match_an_injected_50ms_delay(delay_server):
    delay_server.applied_ms()
    out = api.bench_api(
        delay_server.url, ["GET /"], concurrency=4, duration=2, launcher=REALTIME
    )
    row = out["summary"]["endpoints"][0]
    assert row["requests"] > 100
    check_against_injected_delay(delay_server, row)
    assert row["errors_pct"] == 0.0
    assert out["summary"]["generator"]["saturated"] is False


def test_fixed_rate_percentiles_match_an_injected_50ms_delay(delay_server):
    # 4 connections at 40 req/s: one request per connection every 100 ms, so
    # no request waits for its connection and latency is the delay alone.
    #
    # Timed per request in Lua, this mode also sees the client side's share of
    # the machine's stalls, which the server's record of its own delays does not:
    # about one run in eight here has a stall burst covering over 5% of its
    # requests. Such a run is measured again, at most three runs in all; an
    # engine that is off by more than the bound fails every one of them.
    for attempt in range(3):
        delay_server.applied_ms()
        out = api.bench_api(
            delay_server.url,
            ["GET /"],
            concurrency=4,
            duration=6,
            rate=40,
            launcher=REALTIME,
        )
        row = out["summary"]["endpoints"][0]
        try:
            check_against_injected_delay(delay_server, row)
            break
        except AssertionError:
            if attempt == 2:
                raise
    detail = out["endpoints"][0]
    assert detail["mode"] == "rate"
    assert detail["completed"] == pytest.approx(40 * detail["duration_s"], rel=0.15)
    assert out["summary"]["generator"]["target_rate"] == 40


def test_fixed_rate_counts_latency_from_the_intended_start(delay_server):
    # Two connections asked for 100 req/s can serve only 2 / 50 ms = 40 req/s:
    # requests fall ever further behind schedule, and that wait is latency.
    # A generator measuring from the actual send would report about 50 ms.
    detail = engine.run_timed(
        delay_server.url,
        [engine.Step("root", 1.0, [engine.HttpRequest("GET", "/")])],
        2,
        2,
        rate=100,
        timeout=5,
    )
    assert detail["p50_ms"] > 300
    assert detail["p99_ms"] > 600
    assert detail["generator"]["backlogged_pct"] > 80
    # The delay is the server's, so the generator is not blamed for it.
    assert detail["generator"]["saturated"] is False


def test_json_summary_has_exactly_the_documented_keys(nginx):
    out = api.bench_api(nginx.url, ["/healthz"], concurrency=4, duration=1)
    summary = out["summary"]
    assert list(summary) == [
        "duration_s",
        "concurrency",
        "endpoints",
        "total_requests",
        "success_rate",
        "throughput_rps",
        "generator",
    ]
    assert list(summary["endpoints"][0]) == list(api.ENDPOINT_KEYS)
    assert isinstance(summary["generator"]["saturated"], bool)
    assert "cpu_percent" in summary["generator"]
    assert summary["success_rate"] == 100.0
    assert summary["total_requests"] == summary["endpoints"][0]["requests"] > 0


def test_several_endpoints_are_measured_one_by_one_with_totals(nginx):
    out = api.bench_api(
        nginx.url,
        ["GET /healthz", "GET /fail"],
        concurrency=4,
        duration=1,
        sample_interval=0.2,
    )
    summary = out["summary"]
    ok, failing = summary["endpoints"]
    assert (ok["endpoint"], failing["endpoint"]) == ("GET /healthz", "GET /fail")
    assert ok["errors_pct"] == 0.0 and failing["errors_pct"] == 100.0
    assert summary["total_requests"] == ok["requests"] + failing["requests"]
    expected = 100.0 * ok["requests"] / summary["total_requests"]
    assert summary["success_rate"] == pytest.approx(expected, abs=0.01)
    # Each endpoint has its own per-interval samples, whole intervals only (the
    # first and last are partly outside the run), every one with sends in it.
    for detail in out["endpoints"]:
        samples = detail["samples"]
        assert 2 <= len(samples) <= 5, samples
        times = [s["t"] for s in samples]
        assert times == [round(0.2 * (i + 1), 3) for i in range(len(samples))]
        assert all(s["requests"] > 0 for s in samples), samples
        assert all(s["rps"] == pytest.approx(s["requests"] / 0.2) for s in samples)
        assert sum(s["requests"] for s in samples) <= detail["requests"]


def test_5xx_answers_are_counted_as_errors(nginx):
    fast = engine.run_fast(nginx.url, engine.HttpRequest("GET", "/fail"), 4, 1)
    assert fast["completed"] > 0
    assert fast["error_kinds"]["http"] == fast["completed"]
    assert fast["errors"] == fast["requests"]
    assert fast["errors_pct"] == 100.0

    timed = engine.run_timed(
        nginx.url,
        [
            engine.Step("ok", 1.0, [engine.HttpRequest("GET", "/healthz")]),
            engine.Step("fail", 1.0, [engine.HttpRequest("GET", "/fail")]),
        ],
        4,
        1,
    )
    ok, fail = timed["steps"]
    assert fail["status"]["5xx"] == fail["completed"] > 0
    assert fail["errors"] == fail["requests"]
    assert ok["errors"] == 0 and ok["status"]["2xx"] == ok["completed"]
    assert timed["error_kinds"]["http"] == fail["status"]["5xx"]


def _sent_in_time(server, since: float, seconds: float) -> int:
    """Connections whose request reached the server within ``seconds`` of ``since``.

    wrk starts after ``since``, so such a request had the whole timeout to be
    answered before the run ended: the engine must count it as a timeout.
    """
    return sum(1 for t in server.first_requests() if t < since + seconds)


def test_requests_never_answered_are_counted_as_timeouts(silent_server):
    # Each connection sends one request and waits for ever. One that starts
    # late (after the end minus the timeout) is not yet a timeout when the run
    # ends; every one that started in time is, and nothing else is.
    silent_server.first_requests()
    since = time.monotonic()
    fast = engine.run_fast(
        silent_server.url, engine.HttpRequest("GET", "/"), 4, 3, timeout=1
    )
    in_time = _sent_in_time(silent_server, since, 3 - 1)
    assert fast["completed"] == 0
    assert 1 <= in_time <= fast["error_kinds"]["timeout"] <= 4, (in_time, fast)
    assert fast["errors"] == fast["requests"] == fast["error_kinds"]["timeout"]
    assert fast["errors_pct"] == 100.0

    since = time.monotonic()
    timed = engine.run_timed(
        silent_server.url,
        [engine.Step("root", 1.0, [engine.HttpRequest("GET", "/")])],
        3,
        3,
        timeout=1,
    )
    in_time = _sent_in_time(silent_server, since, 3 - 1)
    assert timed["completed"] == 0
    assert 1 <= in_time <= timed["error_kinds"]["timeout"] <= 3, (in_time, timed)
    assert timed["errors"] == timed["requests"] == timed["error_kinds"]["timeout"]
    in_flight = timed["steps"][0]["in_flight"]
    assert timed["error_kinds"]["timeout"] + in_flight == 3


def test_refused_connections_are_counted_as_errors():
    url = closed_port_url()
    fast = engine.run_fast(url, engine.HttpRequest("GET", "/"), 2, 1)
    kinds = fast["error_kinds"]
    assert fast["completed"] == 0
    assert kinds["connect"] + kinds["write"] + kinds["read"] == fast["requests"] > 0
    assert fast["errors_pct"] == 100.0

    timed = engine.run_timed(
        url, [engine.Step("root", 1.0, [engine.HttpRequest("GET", "/")])], 2, 1
    )
    assert timed["completed"] == 0
    assert timed["errors"] == timed["requests"] > 0


def test_a_target_that_is_down_is_reported_as_down():
    with pytest.raises(TargetDownError, match="connection refused.*environment up"):
        api.bench_api(closed_port_url(), ["GET /"], concurrency=2, duration=1)


def test_a_silent_target_is_reported_as_down(silent_server, monkeypatch):
    with pytest.raises(TargetDownError, match="did not answer"):
        api.preflight(silent_server.url, engine.HttpRequest("GET", "/"), timeout=0.5)


def test_unknown_endpoint_is_refused_with_the_known_ones(nginx):
    with pytest.raises(BenchInputError) as caught:
        api.bench_api(
            nginx.url,
            ["GET /missing"],
            concurrency=2,
            duration=1,
            known=["GET /healthz"],
        )
    message = str(caught.value)
    assert "unknown endpoint GET /missing" in message
    assert "404" in message and "GET /healthz" in message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number above 0, got 0"),
        ({"concurrency": -5}, "concurrency must be a whole number above 0, got -5"),
        ({"duration": 0}, "duration must be greater than zero, got 0"),
        ({"duration": -1}, "duration must be greater than zero, got -1"),
        ({"rate": -10}, "rate must be greater than zero, got -10"),
        ({"concurrency": 2.5}, "concurrency must be a whole number above 0, got 2.5"),
    ],
)
def test_bad_numbers_are_refused_before_any_load(nginx, kwargs, match):
    options = {"concurrency": 2, "duration": 1} | kwargs
    with pytest.raises(BenchInputError, match=match):
        api.bench_api(nginx.url, ["GET /healthz"], **options)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("FETCH /x", "unknown HTTP method 'FETCH'"),
        ("GET x", "must start with '/'"),
        ("GET /a extra", "METHOD /path"),
    ],
)
def test_malformed_endpoints_are_refused(text, match):
    with pytest.raises(BenchInputError, match=match):
        engine.parse_endpoint(text)


def test_timed_mode_refuses_more_connections_than_it_can_time(nginx):
    with pytest.raises(BenchInputError, match="at most 1000 connections"):
        engine.run_timed(
            nginx.url,
            [engine.Step("x", 1.0, [engine.HttpRequest("GET", "/")])],
            1001,
            1,
        )


@pytest.mark.parametrize("rate", [None, 50])
def test_post_bodies_reach_the_server(delay_server, rate):
    delay_server.delay_s = 0.0
    delay_server.requests()
    out = api.bench_api(
        delay_server.url,
        [{"endpoint": "POST /orders", "body": '{"user_id": 1}'}],
        concurrency=2,
        duration=1,
        rate=rate,
    )
    row = out["summary"]["endpoints"][0]
    assert row["endpoint"] == "POST /orders"
    assert row["errors_pct"] == 0.0
    assert row["requests"] > 10
    seen = delay_server.requests()
    # The preflight's request and the load's, every one a POST with the body.
    assert len(seen) >= row["requests"]
    assert set(seen) == {("POST", "/orders", '{"user_id": 1}')}


@pytest.mark.parametrize(
    ("connections", "limit", "threads"),
    [(5, 2, 1), (6, 4, 3), (100, 2, 2), (7, 8, 7), (1, 4, 1), (12, 8, 6)],
)
def test_threads_divide_the_connections(connections, limit, threads):
    assert engine.thread_count(connections, limit) == threads


@pytest.mark.parametrize("threads", [None, 2])
def test_closed_loop_runs_every_connection_asked_for(delay_server, threads):
    # 5 connections do not split over 2 threads: wrk would run 2 + 2.
    delay_server.delay_s = 0.005
    delay_server.connections()
    out = engine.run_fast(
        delay_server.url, engine.HttpRequest("GET", "/"), 5, 1, threads=threads
    )
    assert delay_server.connections() == 5
    assert out["connections"] == 5
    assert 5 % out["generator"]["threads"] == 0
    assert out["errors"] == 0


def test_a_fractional_duration_is_run_as_asked(nginx):
    # wrk takes whole seconds; a run of 1.5 s is stopped by the engine itself,
    # cleanly, neither rounded up to 2 s nor cut short.
    fast = engine.run_fast(
        nginx.url, engine.HttpRequest("GET", "/healthz"), 2, 1.5, sample_interval=0.25
    )
    timed = engine.run_timed(
        nginx.url,
        [engine.Step("x", 1.0, [engine.HttpRequest("GET", "/healthz")])],
        2,
        1.5,
        sample_interval=0.25,
    )
    for run in (fast, timed):
        assert 1.45 <= run["duration_s"] < 1.95, run["duration_s"]
        assert run["completed"] > 0 and run["errors"] == 0
        assert 4 <= len(run["samples"]) <= 6, run["samples"]
