"""Statistics the benchmarks need: percentiles, histograms and a rank test.

Kept free of third-party libraries so the controller needs nothing beyond the
standard library to judge a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

#: Buckets per factor e of the log histograms the Lua script keeps: a bucket is
#: 1% wide, so a value read back from its middle is within 0.5% of the truth.
HIST_K = 1.0 / math.log(1.01)


def hist_bucket(value: float, k: float = HIST_K) -> int:
    """The log-histogram bucket of ``value`` (values below 1 share bucket 0)."""
    return math.floor(math.log(max(value, 1.0)) * k)


def bucket_value(bucket: int, k: float = HIST_K) -> float:
    """The value a log-histogram bucket stands for: its geometric middle."""
    return math.exp((bucket + 0.5) / k)


def hist_quantile(hist: Mapping[int, int], p: float, k: float = HIST_K) -> float:
    """The ``p``-th percentile (0–100) of a log histogram, or 0.0 when it is empty.

    Uses the nearest-rank definition, the same as wrk's own percentiles.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0 and 100, got {p}")
    total = sum(hist.values())
    if total == 0:
        return 0.0
    rank = max(1, math.ceil(p / 100.0 * total))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_value(bucket, k)
    return bucket_value(max(hist), k)


def grid_quantile(grid: Sequence[Sequence[float]], p: float) -> float:
    """The ``p``-th percentile from a grid of ``(percentile, value)`` pairs.

    Between grid points the value is interpolated linearly; outside them the
    nearest end is used. An empty grid gives 0.0.
    """
    if not grid:
        return 0.0
    points = sorted((float(q), float(v)) for q, v in grid)
    if p <= points[0][0]:
        return points[0][1]
    for (q0, v0), (q1, v1) in zip(points, points[1:], strict=False):
        if q0 <= p <= q1:
            if q1 == q0:
                return v1
            return v0 + (v1 - v0) * (p - q0) / (q1 - q0)
    return points[-1][1]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of raw values (0–100); 0.0 for no values."""
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0 and 100, got {p}")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """The middle value (mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks of ``values`` (ties share their mean rank) and the tie sizes."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mid_rank = (i + j) / 2.0 + 1.0
        for pos in range(i, j + 1):
            ranks[order[pos]] = mid_rank
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _exact_u_pvalue(u: float, n1: int, n2: int) -> float:
    """Two-sided exact p-value of U when there are no ties.

    Counts, by dynamic programming, how many of the C(n1+n2, n1) rank
    assignments give each U, which is affordable for the sample counts a
    benchmark produces (tens per run).
    """
    # counts[i][j][u]: arrangements of i first-sample and j second-sample
    # values with statistic u, built one value at a time.
    max_u = n1 * n2
    prev = [[0] * (max_u + 1) for _ in range(n2 + 1)]
    for j in range(n2 + 1):
        prev[j][0] = 1
    for _ in range(n1):
        cur = [[0] * (max_u + 1) for _ in range(n2 + 1)]
        cur[0][0] = 1
        for j in range(1, n2 + 1):
            row_a = prev[j]  # largest value from the first sample: adds j
            row_b = cur[j - 1]  # largest value from the second sample: adds 0
            out = cur[j]
            for v in range(max_u + 1):
                total = row_b[v]
                if v >= j:
                    total += row_a[v - j]
                out[v] = total
        prev = cur
    dist = prev[n2]
    total = math.comb(n1 + n2, n1)
    low = min(u, max_u - u)
    tail = sum(dist[v] for v in range(0, math.floor(low) + 1))
    return min(1.0, 2.0 * tail / total)


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mann–Whitney U test of two independent samples: ``(U of a, two-sided p)``.

    Exact for small samples without ties; otherwise the normal approximation
    with tie correction and continuity correction. Raises ``ValueError`` when a
    sample is empty.
    """
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"both samples need values, got {n1} and {n2}")
    ranks, ties = _ranks(list(a) + list(b))
    r1 = sum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0
    if not ties and n1 + n2 <= 60:
        return u1, _exact_u_pvalue(u1, n1, n2)
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties) / (n * (n - 1))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return u1, 1.0
    mean_u = n1 * n2 / 2.0
    z = (abs(u1 - mean_u) - 0.5) / math.sqrt(variance)
    p = math.erfc(max(z, 0.0) / math.sqrt(2.0))
    return u1, min(1.0, p)
