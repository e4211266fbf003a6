"""Benchmarks of an environment: HTTP load, pgbench, scenarios and comparisons.

Controller-side only: nothing here runs on a target host.
"""

from __future__ import annotations

import os
from pathlib import Path

from nself_ops import PROJECT_DIR


def project_path(variable: str, default: str) -> Path:
    """The folder named by environment ``variable``, else ``default``.

    A relative value (and the default) is taken relative to the project folder,
    not to the current directory, so a task run from anywhere reads and writes
    the same scenarios, results and baselines.
    """
    path = Path(os.environ.get(variable) or default).expanduser()
    return path if path.is_absolute() else PROJECT_DIR / path
