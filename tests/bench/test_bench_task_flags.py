"""The bench tasks' flags: bad numbers are refused before anything is touched.

Each case is refused before the task reads the environment, so these need no stack.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bench-load", "--users", "0"],
            "--users must be a whole number greater than 0, got 0",
        ),
        (
            ["bench-load", "--users", "-5"],
            "--users must be a whole number greater than 0, got -5",
        ),
        (
            ["bench-load", "--users", "2.5"],
            "--users must be a whole number greater than 0, got 2.5",
        ),
        (
            ["bench-load", "--duration", "0"],
            "--duration must be a number greater than 0, got 0",
        ),
        (
            ["bench-load", "--duration", "inf"],
            "--duration must be a number greater than 0, got inf",
        ),
        (
            ["bench-load", "--ramp-up", "-1"],
            "--ramp-up must be a number of at least 0, got -1",
        ),
        (
            ["bench-load", "--ramp-up", "400"],
            "--ramp-up must be at least 0 and shorter than the duration, got ramp-up "
            "400s and duration 300s (the scenario's)",
        ),
        (
            ["bench-load", "--ramp-up", "5", "--duration", "5"],
            "got ramp-up 5s and duration 5s",
        ),
        # Fractions are accepted for bench-api's --duration and --rate: what is
        # refused here is the other flag, or the sign.
        (
            ["bench-api", "--duration", "0.5", "--rate", "12.5", "--concurrent", "0"],
            "--concurrent must be greater than 0, got 0",
        ),
        (
            ["bench-api", "--duration", "-0.5"],
            "--duration must be greater than 0, got -0.5",
        ),
        (["bench-api", "--rate", "-2.5"], "--rate must be greater than 0, got -2.5"),
    ],
)
def test_bad_numbers_name_the_flag_the_value_and_the_range(invoke, args, message):
    result = invoke(*args)
    assert result.returncode == 2, result
    assert message in result.stderr, result
    assert "invalid value" not in result.stderr
    assert "Traceback" not in result.output
