"""Integration tests of scenario load: weights, ramp-up, per-step figures, progress."""

from __future__ import annotations

import io
import json

import pytest
from bench_servers import closed_port_url

from nself_ops.bench import load, scenario, stats
from nself_ops.bench.errors import BenchInputError, ScenarioError, TargetDownError

WEIGHTED = """\
name: Weighted
steps:
  - name: half
    endpoint: GET /a
    weight: 0.5
  - name: third
    endpoint: GET /b/{id}
    weight: 0.3
  - name: fifth
    endpoint: POST /c
    weight: 0.2
    body:
      id: "{id}"
settings:
  users: 8
  duration: 2
  ramp_up: 0
"""


def test_weights_are_honoured_within_two_points_over_10000_requests(nginx):
    # Runs of 3 s until 10,000 requests are in, however busy the machine: the
    # shares are judged over all of them.
    sc = scenario.parse(WEIGHTED, "weighted.yaml")
    counts: dict[str, int] = {}
    endpoints: dict[str, str] = {}
    for run in range(5):
        out = load.bench_load(
            nginx.url, sc, fill={"id": [1, 2, 3]}, duration=3, seed=11 + run
        )
        summary = out["summary"]
        assert summary["success_rate"] == 100.0
        for step in summary["steps"]:
            assert step["errors_pct"] == 0.0
            assert step["p50_ms"] > 0
            counts[step["name"]] = counts.get(step["name"], 0) + step["requests"]
            endpoints[step["name"]] = step["endpoint"]
        if sum(counts.values()) >= 10_000:
            break
    total = sum(counts.values())
    assert total >= 10_000, counts
    shares = {name: 100.0 * n / total for name, n in counts.items()}
    assert shares["half"] == pytest.approx(50, abs=2)
    assert shares["third"] == pytest.approx(30, abs=2)
    assert shares["fifth"] == pytest.approx(20, abs=2)
    assert list(endpoints.values()) == ["GET /a", "GET /b/{id}", "POST /c"]


def _mean(values: list[float]) -> float:
    assert values
    return sum(values) / len(values)


def test_users_ramp_up_linearly(delay_server):
    # 10 users, each doing one 20 ms request after another, started one every
    # 0.3 s over 3 s: throughput climbs from ~50 to ~500 req/s, then holds.
    # Judged on half-second windows: the first after the start has at most 4
    # users going (under half of the end's), the one around 1.5 s some 4 to 8,
    # and those after the ramp all 10.
    delay_server.delay_s = 0.020
    delay_server.applied_ms()
    sc = scenario.parse(WEIGHTED.replace("{id}", "1"), "ramp.yaml")
    out = load.bench_load(
        delay_server.url,
        sc,
        users=10,
        duration=4.5,
        ramp_up=3,
        sample_interval=0.5,
    )
    samples = out["result"]["samples"]
    early = _mean([s["rps"] for s in samples if s["t"] <= 0.5])
    middle = _mean([s["rps"] for s in samples if 1.25 <= s["t"] <= 1.75])
    late = _mean([s["rps"] for s in samples if 3.25 <= s["t"] <= 4.0])
    assert early < 0.5 * late, samples
    assert early < middle < late, samples
    assert 0.3 * late < middle < 0.9 * late, samples
    # The step's median is judged against the delay the server really applied:
    # the VM's stalls stretch its 20 ms sleeps now and then.
    applied = stats.percentile(delay_server.applied_ms(), 50)
    assert out["summary"]["steps"][0]["p50_ms"] == pytest.approx(applied, abs=1.5)


def test_scenario_step_errors_are_counted_per_step(nginx):
    text = WEIGHTED.replace("GET /a", "GET /fail").replace("{id}", "1")
    out = load.bench_load(nginx.url, scenario.parse(text, "x.yaml"), duration=1)
    steps = {s["name"]: s for s in out["summary"]["steps"]}
    assert steps["half"]["errors_pct"] == 100.0
    assert steps["third"]["errors_pct"] == 0.0
    assert out["summary"]["success_rate"] == pytest.approx(
        100 - steps["half"]["share_pct"], abs=0.5
    )


def test_progress_bar_draws_when_asked_and_not_on_a_pipe(nginx):
    sc = scenario.parse(WEIGHTED.replace("{id}", "1"), "p.yaml")
    stream = io.StringIO()
    bar = load.ProgressBar(1.0, 4, 0.5, stream=stream, force=True)
    load.bench_load(nginx.url, sc, users=4, duration=1, ramp_up=0.5, progress=bar)
    text = stream.getvalue()
    assert "users 4/4" in text and "100%" in text
    assert text.endswith("\n")

    quiet = io.StringIO()
    silent = load.ProgressBar(1.0, 4, 0.5, stream=quiet)
    silent(0.5)
    silent.finish()
    assert quiet.getvalue() == ""


def test_progress_bar_counts_users_of_a_linear_ramp():
    bar = load.ProgressBar(10, 100, 4, stream=io.StringIO())
    assert bar.active_users(0) == 1
    assert bar.active_users(2) == 51
    assert bar.active_users(4) == 100
    assert "[" + "#" * 15 + "-" * 15 + "]" in bar.line(5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"users": 0}, "users must be a whole number above 0, got 0"),
        ({"users": -3}, "users must be a whole number above 0, got -3"),
        ({"duration": 0}, "duration must be greater than zero, got 0"),
        ({"duration": -2}, "duration must be greater than zero, got -2"),
        ({"ramp_up": 5, "duration": 5}, "ramp-up must be at least 0 and shorter"),
    ],
)
def test_bad_load_options_are_refused(nginx, kwargs, match):
    sc = scenario.parse(WEIGHTED.replace("{id}", "1"), "bad.yaml")
    with pytest.raises(BenchInputError, match=match):
        load.bench_load(nginx.url, sc, **kwargs)


@pytest.mark.parametrize(
    ("old", "new", "line", "index", "status"),
    [
        ("GET /b/{id}", "GET /missing", 7, 1, 404),
        ("POST /c", "POST /readonly", 10, 2, 405),
    ],
)
def test_a_step_the_server_does_not_know_names_file_line_and_endpoint(
    nginx, old, new, line, index, status
):
    sc = scenario.parse(WEIGHTED.replace(old, new), "typo.yaml")
    with pytest.raises(ScenarioError) as caught:
        load.bench_load(nginx.url, sc, fill={"id": [1]}, duration=1)
    err = caught.value
    assert (err.path, err.line, err.field) == (
        "typo.yaml",
        line,
        f"steps[{index}].endpoint",
    )
    assert f"the server answers {status}" in str(err)
    assert str(err).startswith(f"typo.yaml:{line}: steps[{index}].endpoint: ")


def test_a_scenario_against_a_target_that_is_down_says_it_is_down():
    sc = scenario.parse(WEIGHTED, "down.yaml")
    with pytest.raises(TargetDownError, match="connection refused.*environment up"):
        load.bench_load(closed_port_url(), sc, fill={"id": [1]}, duration=1)


PAY_ONCE = """\
name: Pay once
steps:
  - name: browse
    endpoint: GET /browse
    weight: 0.5
  - name: pay
    endpoint: POST /pay
    weight: 0.5
    unique: true
    body:
      order_id: "{order_id}"
      amount: "{amount}"
settings:
  users: 4
  duration: 2
"""


def test_a_unique_step_never_sends_the_same_row_twice(delay_server):
    # Like paying an order: each may succeed once. The delay server records
    # every request it answers, the preflight's included.
    delay_server.delay_s = 0.010
    delay_server.requests()
    orders = [{"order_id": i, "amount": f"{i}.50"} for i in range(1, 1001)]
    sc = scenario.parse(PAY_ONCE, "pay.yaml")
    out = load.bench_load(delay_server.url, sc, fill={"order": orders}, seed=3)
    pay = next(s for s in out["result"]["steps"] if s["name"] == "pay")
    paid = [body for method, path, body in delay_server.requests() if path == "/pay"]
    assert 100 < len(paid) < 1000, len(paid)
    # The preflight's request comes on top; those still in flight at the end
    # may or may not have been read by the server.
    assert pay["requests"] + 1 <= len(paid) <= pay["requests"] + pay["in_flight"] + 1
    assert pay["errors"] == 0
    assert len(set(paid)) == len(paid)
    bodies = {
        json.dumps({"order_id": o["order_id"], "amount": o["amount"]}) for o in orders
    }
    assert set(paid) <= bodies


def test_a_unique_step_has_one_variant_per_row():
    sc = scenario.parse(PAY_ONCE, "pay.yaml")
    orders = [{"order_id": i, "amount": "1.00"} for i in range(300)]
    steps = scenario.build_steps(sc, {"order": orders, "id": [1, 2]}, seed=1)
    pay = steps[1]
    assert pay.unique is True and steps[0].unique is False
    ids = sorted(json.loads(r.body)["order_id"] for r in pay.requests)
    assert ids == list(range(300))
