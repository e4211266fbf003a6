"""Integration tests of result files, baselines and comparisons over real runs."""

from __future__ import annotations

import json

import pytest
from bench_servers import REALTIME

from nself_ops.bench import commands, results
from nself_ops.bench.errors import BenchInputError

RUN = {"concurrency": 5, "duration": 2, "sample_interval": 0.2}

# Runs judged for a verdict: some fifteen intervals each, with wrk in the
# real-time class where that is allowed, so a few stretched intervals on a busy
# machine cannot move a median by the threshold.
JUDGED_RUN = {
    "concurrency": 5,
    "duration": 4,
    "sample_interval": 0.25,
    "launcher": REALTIME,
}


def run_api(server, env: str = "local") -> commands.Outcome:
    return commands.run_api(env, server.url, ["GET /"], **RUN)


def test_each_run_is_saved_with_env_parameters_commit_and_samples(
    delay_server, results_env
):
    results_dir, _baseline = results_env
    delay_server.delay_s = 0.010
    outcome = run_api(delay_server)
    assert outcome.record_path.parent == results_dir
    record = json.loads(outcome.record_path.read_text())
    assert record["env"] == "local"
    assert record["kind"] == "api"
    assert record["parameters"]["concurrency"] == 5
    assert record["git_commit"]
    assert record["summary"] == outcome.summary
    series = record["series"][0]
    assert series["name"] == "GET /"
    assert len(series["samples"]) >= 5
    assert all(s["rps"] > 0 for s in series["samples"])
    page = outcome.report_path.read_text()
    assert outcome.report_path.suffix == ".html"
    assert page.count("<svg") == 2


def test_compare_flags_a_30_percent_slowdown_but_not_the_same_build(
    delay_server, results_env
):
    delay_server.delay_s = 0.020
    for _ in range(2):
        commands.run_api("local", delay_server.url, ["GET /"], **JUDGED_RUN)
    same = commands.run_compare("local", with_="last").summary
    assert same["regression"] is False, same["rows"]
    assert same["judged"] >= 1
    assert {r["verdict"] for r in same["rows"]} <= {"no change", "not significant"}
    assert all(r["samples"][0] >= 12 and r["samples"][1] >= 12 for r in same["rows"])

    commands.save_baseline("local")
    delay_server.delay_s = 0.026
    commands.run_api("local", delay_server.url, ["GET /"], **JUDGED_RUN)
    slower = commands.run_compare("local", with_="baseline").summary
    assert slower["regression"] is True
    rows = {r["metric"]: r for r in slower["rows"]}
    assert rows["throughput_rps"]["verdict"] == "regression"
    assert rows["throughput_rps"]["delta_pct"] < -15
    assert rows["throughput_rps"]["p_value"] < 0.01
    text = commands.run_compare("local", with_="last").text
    assert "REGRESSION" in text and "GET /" in text


def test_timed_runs_compare_on_latency_too(delay_server, results_env):
    delay_server.delay_s = 0.020
    options = dict(RUN, rate=100)
    commands.run_api("local", delay_server.url, ["GET /"], **options)
    delay_server.delay_s = 0.026
    commands.run_api("local", delay_server.url, ["GET /"], **options)
    report = commands.run_compare("local", with_="last").summary
    rows = {r["metric"]: r for r in report["rows"]}
    assert rows["latency_avg_ms"]["verdict"] == "regression"
    assert rows["latency_avg_ms"]["delta_pct"] == pytest.approx(30, abs=8)
    assert report["regression"] is True


def test_baseline_save_copies_the_last_run(delay_server, results_env):
    _results, baseline_dir = results_env
    delay_server.delay_s = 0.0
    first = run_api(delay_server, env="staging")
    second = run_api(delay_server, env="staging")
    saved = commands.save_baseline("staging").summary["saved"]
    assert saved == [str(baseline_dir / "baseline-api-staging.json")]
    assert (baseline_dir / "baseline-api-staging.json").read_text() == (
        second.record_path.read_text()
    )
    assert first.record_path.read_text() != second.record_path.read_text()


def test_compare_without_runs_or_baseline_says_what_is_missing(results_env):
    with pytest.raises(BenchInputError, match="no api benchmark runs of environment"):
        commands.run_compare("local")
    with pytest.raises(BenchInputError, match="to save as baseline"):
        commands.save_baseline("local")
    with pytest.raises(BenchInputError, match="unknown --with 'yesterday'"):
        commands.run_compare("local", with_="yesterday")


def test_compare_needs_a_baseline_or_two_runs(delay_server, results_env):
    delay_server.delay_s = 0.0
    run_api(delay_server)
    with pytest.raises(BenchInputError, match="needs two api runs"):
        commands.run_compare("local", with_="last")
    with pytest.raises(BenchInputError, match="bench-baseline-save"):
        commands.run_compare("local", with_="baseline")
    assert len(results.list_runs(kind="api", env="local")) == 1


def test_too_few_samples_judge_nothing_and_exit_3(delay_server, results_env, invoke):
    delay_server.delay_s = 0.0
    for _ in range(2):
        commands.run_api(
            "local", delay_server.url, ["GET /"], concurrency=2, duration=1
        )
    report = commands.run_compare("local", with_="last").summary
    assert report["judged"] == 0
    assert {r["verdict"] for r in report["rows"]} == {"too few samples"}
    assert report["regression"] is False
    assert report["conclusion"].startswith("NOTHING JUDGED: too few samples")
    result = invoke("bench-compare", "--with", "last")
    assert result.returncode == 3, result
    assert "NOTHING JUDGED" in result.stdout
    as_json = invoke("bench-compare", "--with", "last", "--format", "json")
    assert as_json.returncode == 3, as_json
    assert as_json.json()["judged"] == 0
    assert "NOTHING JUDGED" in as_json.stderr


def test_runs_at_other_concurrency_or_mode_are_not_comparable(
    delay_server, results_env, invoke
):
    delay_server.delay_s = 0.010
    run_api(delay_server)
    commands.run_api("local", delay_server.url, ["GET /"], **dict(RUN, concurrency=3))
    report = commands.run_compare("local", with_="last").summary
    assert report["judged"] == 0
    assert {r["verdict"] for r in report["rows"]} == {"not comparable"}
    assert report["warnings"] == [
        "the runs differ in concurrency: 5 before, 3 after; they are not comparable"
    ]
    result = invoke("bench-compare", "--with", "last")
    assert result.returncode == 3, result
    assert "Warning: the runs differ in concurrency: 5 before, 3 after" in result.stdout
    as_json = invoke("bench-compare", "--with", "last", "--format", "json")
    assert "Warning: the runs differ in concurrency" in as_json.stderr

    commands.run_api("local", delay_server.url, ["GET /"], **dict(RUN, rate=50))
    report = commands.run_compare("local", with_="last").summary
    assert report["judged"] == 0
    assert any(
        "mode: closed before, rate 50 req/s after" in w for w in report["warnings"]
    ), report["warnings"]


def test_an_endpoint_only_one_run_has_is_named_and_not_comparable(
    delay_server, results_env
):
    delay_server.delay_s = 0.010
    commands.run_api("local", delay_server.url, ["GET /", "GET /other"], **RUN)
    run_api(delay_server)
    report = commands.run_compare("local", with_="last").summary
    rows = {(r["endpoint"], r["verdict"]) for r in report["rows"]}
    assert ("GET /other", "not comparable") in rows
    assert report["judged"] >= 1
    assert all(
        r["verdict"] != "not comparable"
        for r in report["rows"]
        if r["endpoint"] == "GET /"
    )
    assert report["warnings"] == ["only the run before has GET /other: not comparable"]
    text = commands.run_compare("local", with_="last").text
    assert "Warning: only the run before has GET /other" in text
