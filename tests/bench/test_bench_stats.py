"""Unit tests of the statistics helpers: percentiles, histograms, the U test."""

from __future__ import annotations

import math
import random

import pytest

from nself_ops.bench import stats


def test_percentile_uses_nearest_rank():
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 95) == 95
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([], 50) == 0.0


@pytest.mark.parametrize("bad", [-1, 100.5])
def test_percentile_out_of_range_names_the_value(bad):
    with pytest.raises(ValueError, match=str(bad)):
        stats.percentile([1, 2], bad)


def test_log_histogram_reads_back_within_half_a_percent():
    rng = random.Random(4)
    values = [rng.uniform(40_000, 60_000) for _ in range(5000)]
    hist: dict[int, int] = {}
    for v in values:
        b = stats.hist_bucket(v)
        hist[b] = hist.get(b, 0) + 1
    for p in (50, 95, 99):
        exact = stats.percentile(values, p)
        assert abs(stats.hist_quantile(hist, p) - exact) / exact < 0.011


def test_bucket_value_lies_inside_its_bucket():
    for value in (1.0, 37.0, 1234.5, 50_000.0, 2e6):
        b = stats.hist_bucket(value)
        assert stats.hist_bucket(stats.bucket_value(b)) == b


def test_grid_quantile_interpolates_between_points():
    grid = [[50, 10.0], [90, 20.0], [99, 40.0], [100, 80.0]]
    assert stats.grid_quantile(grid, 50) == 10.0
    assert stats.grid_quantile(grid, 70) == pytest.approx(15.0)
    assert stats.grid_quantile(grid, 100) == 80.0
    assert stats.grid_quantile(grid, 10) == 10.0
    assert stats.grid_quantile([], 50) == 0.0


def test_median_of_even_and_odd_counts():
    assert stats.median([3, 1, 2]) == 2
    assert stats.median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError, match="no values"):
        stats.median([])


def test_mann_whitney_exact_p_for_fully_separated_samples():
    # All of a below all of b: U = 0, and only 2 of C(10, 5) = 252
    # arrangements are at least that extreme on either side.
    u, p = stats.mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert u == 0
    assert p == pytest.approx(2 / 252)


def test_mann_whitney_is_not_significant_for_interleaved_samples():
    _u, p = stats.mann_whitney_u([1, 4, 5, 8], [2, 3, 6, 7])
    assert p > 0.5


def test_mann_whitney_normal_approximation_with_ties():
    a = [1.0] * 20 + [2.0] * 20
    b = [2.0] * 20 + [3.0] * 20
    u, p = stats.mann_whitney_u(a, b)
    assert u < 40 * 40 / 2
    assert p < 1e-6
    _u, p_same = stats.mann_whitney_u(a, list(a))
    assert p_same == pytest.approx(1.0)


def test_mann_whitney_large_samples_agree_with_exact_size():
    rng = random.Random(9)
    a = [rng.gauss(100, 5) for _ in range(40)]
    b = [rng.gauss(100, 5) * 1.3 for _ in range(40)]
    _u, p = stats.mann_whitney_u(a, b)
    assert p < 1e-9
    assert math.isfinite(p)


def test_mann_whitney_needs_values():
    with pytest.raises(ValueError, match="0 and 3"):
        stats.mann_whitney_u([], [1, 2, 3])
