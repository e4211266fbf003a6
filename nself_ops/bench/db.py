"""``bench-db``: pgbench against a scratch database of its own.

pgbench creates and fills its ``pgbench_*`` tables in a database that exists
only for benchmarking (``nself_bench`` unless told otherwise), created here if
missing, so the application's tables are never touched. Latency percentiles
come from pgbench's per-transaction log, not from its averages. The password
travels in ``PGPASSWORD`` only: never on a command line, never in output.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import stats
from .engine import check_count, check_positive
from .errors import BenchInputError, GeneratorError, TargetDownError, ToolMissingError

log = logging.getLogger("nself.bench")

DEFAULT_DATABASE = "nself_bench"

#: Workload name → pgbench's builtin script.
WORKLOADS = {
    "read": "select-only",
    "write": "simple-update",
    "mixed": "tpcb-like",
}

VIAS = ("direct", "pooler")

_PG_BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")


@dataclass(frozen=True)
class DbTarget:
    """Where to connect: host, port, user and password (kept out of ``repr``)."""

    host: str
    port: int
    user: str
    password: str | None = None

    def __repr__(self) -> str:
        return f"DbTarget(host={self.host!r}, port={self.port}, user={self.user!r})"

    def env(self) -> dict[str, str]:
        """The environment for libpq programs: the password goes only here."""
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def pg_program(name: str) -> str:
    """Path of a PostgreSQL client program, or ``ToolMissingError``."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _PG_BINDIRS:
        candidate = os.path.join(folder, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissingError(f"{name} is not installed; install postgresql-client")


def check_workload(workload: str) -> str:
    """``workload`` if known, else ``BenchInputError`` naming the valid ones."""
    if workload not in WORKLOADS:
        raise BenchInputError(
            f"unknown workload {workload!r}; valid: {', '.join(WORKLOADS)}"
        )
    return workload


def check_database_name(name: str, protected: Sequence[str] = ()) -> str:
    """A safe scratch database name, never one of ``protected``."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name or ""):
        raise BenchInputError(
            f"scratch database name must be lower-case letters, digits and _, "
            f"got {name!r}"
        )
    if name in protected or name in ("postgres", "template0", "template1"):
        raise BenchInputError(
            f"refusing to benchmark in {name!r}: pgbench drops and refills its "
            f"tables, so it needs a scratch database of its own "
            f"(default {DEFAULT_DATABASE!r})"
        )
    return name


def _connect_error(target: DbTarget, text: str) -> Exception:
    if "Connection refused" in text or "could not connect" in text:
        return TargetDownError(
            f"PostgreSQL does not answer at {target.host}:{target.port}; "
            "is the environment up?"
        )
    if "password authentication failed" in text:
        return BenchInputError(
            f"PostgreSQL at {target.host}:{target.port} refused the password "
            f"of user {target.user!r}"
        )
    return GeneratorError(text.strip().splitlines()[-1] if text.strip() else text)


def _check_pooler(target: DbTarget, database: str) -> None:
    """Fail early, and say so plainly, when no pooler answers at ``target``."""
    import psycopg

    try:
        psycopg.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password or None,
            dbname=database,
            connect_timeout=5,
        ).close()
    except psycopg.OperationalError as exc:
        text = str(exc)
        detail = (
            "connection refused"
            if "refused" in text
            else (text.strip().splitlines() or ["no answer"])[0]
        )
        raise GeneratorError(
            f"the connection pooler does not answer at {target.host}:{target.port} "
            f"({detail}); is PgBouncer enabled for this environment?"
        ) from None


def ensure_database(
    target: DbTarget, database: str, maintenance_db: str = "postgres"
) -> bool:
    """Create ``database`` unless it exists; return whether it was created."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password or None,
            dbname=maintenance_db,
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
            ).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            log.info("created scratch database %s", database)
            return True
    except psycopg.OperationalError as exc:
        raise _connect_error(target, str(exc)) from None


def initialise(
    target: DbTarget, database: str = DEFAULT_DATABASE, scale: int = 1
) -> None:
    """Create the scratch database if needed and let pgbench fill its tables."""
    check_positive("scale", scale)
    ensure_database(target, database)
    argv = [
        pg_program("pgbench"),
        "-i",
        "-q",
        "-s",
        str(int(scale)),
        "-h",
        target.host,
        "-p",
        str(target.port),
        "-U",
        target.user,
        database,
    ]
    proc = subprocess.run(
        argv,
        env=target.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise _connect_error(target, proc.stderr)


def build_command(
    target: DbTarget,
    database: str,
    *,
    workload: str,
    clients: int,
    duration: float,
    connect: bool,
    log_prefix: str,
) -> list[str]:
    """pgbench's argument list for a run (no password: that is in the env)."""
    threads = max(1, min(clients, os.cpu_count() or 1))
    argv = [
        pg_program("pgbench"),
        "-n",
        "-b",
        WORKLOADS[workload],
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(max(1, round(duration))),
        "-l",
        "--log-prefix",
        log_prefix,
        "-h",
        target.host,
        "-p",
        str(target.port),
        "-U",
        target.user,
    ]
    if connect:
        argv.append("-C")
    argv.append(database)
    return argv


#: pgbench's TPS line: "(without initial connection time)" normally, "(including
#: reconnection times)" with --connect (pgbench 14 and later).
_TPS = re.compile(
    r"^tps = ([0-9]+(?:\.[0-9]+)?) "
    r"\((?:without initial connection time|including reconnection times)\)",
    re.MULTILINE,
)


def parse_tps(stdout: str) -> float:
    """pgbench's own TPS figure from its report, or ``GeneratorError``."""
    match = _TPS.search(stdout)
    if match is None:
        lines = [line for line in stdout.splitlines() if line.startswith("tps")]
        raise GeneratorError(
            "cannot read the TPS figure in pgbench's report: "
            + (lines[0] if lines else "no 'tps =' line")
        )
    return float(match.group(1))


def per_second_samples(
    per_second: dict[int, list], last_second: int | None = None
) -> list[dict[str, Any]]:
    """One sample per whole second of the run, zero where nothing finished.

    ``per_second`` maps an epoch second to ``[transactions, latency sum µs]``;
    ``last_second`` is the second in which the run ended, when known, so that
    a stall up to the end shows as well. The first and last seconds are partly
    outside the run and left out.
    """
    if not per_second:
        return []
    first = min(per_second)
    last = max(per_second)
    if last_second is not None:
        last = max(last, last_second)
    samples = []
    for second in range(first + 1, last):
        count, total = per_second.get(second, [0, 0.0])
        samples.append(
            {
                "t": second - first,
                "requests": count,
                "rps": count,
                "avg_ms": round(total / count / 1000.0, 3) if count else None,
            }
        )
    return samples


def parse_log_lines(lines: Sequence[str]) -> tuple[list[float], int, dict[int, list]]:
    """Latencies (µs) of finished transactions, the failed count, per-second rows.

    A line is ``client transaction latency_us script epoch_s epoch_us``; a
    failed or skipped transaction has a word in place of its latency.
    """
    latencies: list[float] = []
    failed = 0
    per_second: dict[int, list] = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 6:
            continue
        second = int(parts[4])
        cell = per_second.setdefault(second, [0, 0.0])
        if not parts[2].isdigit():
            failed += 1
            continue
        value = float(parts[2])
        latencies.append(value)
        cell[0] += 1
        cell[1] += value
    return latencies, failed, per_second


def bench_db(
    target: DbTarget,
    *,
    workload: str = "mixed",
    clients: int = 10,
    duration: float = 60.0,
    connect: bool = False,
    via: str = "direct",
    database: str = DEFAULT_DATABASE,
    init_target: DbTarget | None = None,
    protected: Sequence[str] = (),
    scale: int = 1,
) -> dict[str, Any]:
    """Initialise the scratch tables and run pgbench; return the summary.

    ``target`` is where the load goes (PostgreSQL or the pooler in front of
    it); ``init_target`` is the direct connection used to create the database
    and its tables (defaults to ``target``). The summary holds at least
    ``tps``, ``latency_avg_ms``, ``p95_ms`` and ``p99_ms``.
    """
    check_workload(workload)
    if via not in VIAS:
        raise BenchInputError(f"unknown --via {via!r}; valid: {', '.join(VIAS)}")
    check_count("clients", clients)
    check_positive("duration", duration)
    check_database_name(database, protected)

    initialise(init_target or target, database, scale)
    if via == "pooler":
        _check_pooler(target, database)
    with tempfile.TemporaryDirectory(prefix="nself-pgbench-") as tmp:
        prefix = os.path.join(tmp, "pgbench_log")
        argv = build_command(
            target,
            database,
            workload=workload,
            clients=clients,
            duration=duration,
            connect=connect,
            log_prefix=prefix,
        )
        log.info("running pgbench %s", " ".join(argv[1:]))
        started = time.time()
        proc = subprocess.run(
            argv,
            env=target.env(),
            capture_output=True,
            text=True,
            timeout=duration + 120,
            cwd=tmp,
            check=False,
        )
        if proc.returncode not in (0, 2) or "tps =" not in proc.stdout:
            raise _connect_error(target, proc.stderr or proc.stdout)
        lines: list[str] = []
        for path in sorted(glob.glob(prefix + ".*")):
            with open(path, encoding="ascii") as fh:
                lines.extend(fh)

    latencies, failed, per_second = parse_log_lines(lines)
    measured = parse_tps(proc.stdout)
    # pgbench stops at -T seconds after it started (a little after ``started``).
    samples = per_second_samples(
        per_second, math.floor(started + max(1, round(duration)))
    )
    avg = sum(latencies) / len(latencies) / 1000.0 if latencies else 0.0
    return {
        "workload": workload,
        "script": WORKLOADS[workload],
        "clients": clients,
        "duration_s": duration,
        "via": via,
        "connect": connect,
        "database": database,
        "transactions": len(latencies),
        "failed": failed,
        "tps": round(measured, 2),
        "latency_avg_ms": round(avg, 3),
        "p50_ms": round(stats.percentile(latencies, 50) / 1000.0, 3),
        "p95_ms": round(stats.percentile(latencies, 95) / 1000.0, 3),
        "p99_ms": round(stats.percentile(latencies, 99) / 1000.0, 3),
        "latency_quantiles_ms": [
            [p, round(stats.percentile(latencies, p) / 1000.0, 4)]
            for p in [*range(1, 100), 99.9, 99.99]
        ]
        if latencies
        else [],
        "sample_interval_s": 1.0,
        "samples": samples,
    }
