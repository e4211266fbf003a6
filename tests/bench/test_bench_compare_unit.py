"""Unit tests of the comparison verdicts on sample sets."""

from __future__ import annotations

import random

import pytest

from nself_ops.bench import compare
from nself_ops.bench.errors import BenchInputError


def noisy(
    center: float, n: int = 20, spread: float = 0.03, seed: int = 1
) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def test_thirty_percent_slower_latency_is_a_regression():
    row = compare.judge(noisy(20.0), noisy(26.0, seed=2), higher_is_better=False)
    assert row["verdict"] == "regression"
    assert row["delta_pct"] == pytest.approx(30, abs=3)
    assert row["p_value"] < 0.01


def test_lower_throughput_is_a_regression_and_higher_an_improvement():
    worse = compare.judge(noisy(1000), noisy(700, seed=3), higher_is_better=True)
    better = compare.judge(noisy(1000), noisy(1300, seed=3), higher_is_better=True)
    assert worse["verdict"] == "regression"
    assert better["verdict"] == "improved"


def test_same_distribution_is_no_change():
    row = compare.judge(
        noisy(20.0, seed=5), noisy(20.0, seed=6), higher_is_better=False
    )
    assert row["verdict"] == "no change"


def test_same_distribution_is_not_significant_whatever_the_threshold():
    # With no threshold to hide behind, the rank test itself must find the two
    # sets of one distribution alike.
    before, after = noisy(20.0, seed=5), noisy(20.0, seed=6)
    assert before != after
    row = compare.judge(before, after, higher_is_better=False, threshold_pct=0)
    assert row["delta_pct"] != 0
    assert row["verdict"] == "not significant"
    assert row["p_value"] > 0.1
    # The same spread around a 30% slower centre is a regression at that threshold.
    slower = compare.judge(
        before, noisy(26.0, seed=6), higher_is_better=False, threshold_pct=0
    )
    assert slower["verdict"] == "regression"


def test_large_but_noisy_difference_is_not_significant():
    before = [10, 30, 10, 30, 10]
    after = [12, 36, 12, 36, 12]
    row = compare.judge(before, after, higher_is_better=False)
    assert row["verdict"] == "not significant"


def test_too_few_samples_are_said_to_be_too_few():
    row = compare.judge([1.0, 2.0], [3.0, 4.0], higher_is_better=False)
    assert row["verdict"] == "too few samples"


def test_bad_threshold_and_alpha_are_refused():
    record = {"series": []}
    with pytest.raises(BenchInputError, match="threshold"):
        compare.compare_records(record, record, threshold_pct=0)
    with pytest.raises(BenchInputError, match="significance"):
        compare.compare_records(record, record, alpha=1.5)
