"""Where the bench folders are: relative to the project folder, from any directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from nself_ops import PROJECT_DIR
from nself_ops.bench import commands, results, scenario

SCRATCH = "bench/results"  # ignored by git, so a test may write below it


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """The current directory is a folder outside the project, and not a git one."""
    monkeypatch.chdir(tmp_path)
    for name in ("BENCH_SCENARIOS_PATH", "BENCH_RESULTS_PATH", "BENCH_BASELINE_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def relative_dirs(elsewhere, monkeypatch):
    """Relative BENCH_RESULTS_PATH and BENCH_BASELINE_PATH, removed afterwards."""
    base = f"{SCRATCH}/test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("BENCH_RESULTS_PATH", f"{base}/results")
    monkeypatch.setenv("BENCH_BASELINE_PATH", f"{base}/baseline")
    yield PROJECT_DIR / base
    shutil.rmtree(PROJECT_DIR / base, ignore_errors=True)


def test_defaults_are_the_project_folders_whatever_the_current_directory(elsewhere):
    assert scenario.scenarios_dir() == PROJECT_DIR / "bench" / "scenarios"
    assert results.results_dir() == PROJECT_DIR / "bench" / "results"
    assert results.baseline_dir() == PROJECT_DIR / "bench" / "baseline"
    assert "checkout" in scenario.available()
    found = scenario.find("checkout")
    assert found == PROJECT_DIR / "bench" / "scenarios" / "checkout.yaml"
    assert scenario.load(found).name == "Checkout Flow"


def test_relative_values_are_taken_from_the_project_folder(elsewhere, monkeypatch):
    monkeypatch.setenv("BENCH_SCENARIOS_PATH", "bench/scenarios")
    monkeypatch.setenv("BENCH_RESULTS_PATH", "bench/results/x")
    assert scenario.find("checkout").parent == PROJECT_DIR / "bench" / "scenarios"
    assert results.results_dir() == PROJECT_DIR / "bench" / "results" / "x"
    monkeypatch.setenv("BENCH_RESULTS_PATH", str(elsewhere / "abs"))
    assert results.results_dir() == elsewhere / "abs"


def test_runs_are_saved_in_the_project_with_the_project_commit(
    relative_dirs, elsewhere, delay_server
):
    delay_server.delay_s = 0.0
    outcome = commands.run_api(
        "local", delay_server.url, ["GET /"], concurrency=2, duration=1
    )
    assert outcome.record_path.parent == relative_dirs / "results"
    assert not (elsewhere / "bench").exists()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    record = json.loads(outcome.record_path.read_text())
    assert record["git_commit"].removesuffix("-dirty") == head
    saved = commands.save_baseline("local").summary["saved"]
    assert saved == [str(relative_dirs / "baseline" / "baseline-api-local.json")]
