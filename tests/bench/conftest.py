"""Fixtures of the benchmark tests: real servers on 127.0.0.1, started here."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench_servers import DelayServer, Nginx, SilentServer, free_port, wait_for_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PASSWORD = "bench-secret-9f3c"


@pytest.fixture(scope="session")
def nginx() -> Iterator[Nginx]:
    server = Nginx()
    yield server
    server.stop()


@pytest.fixture
def delay_server() -> Iterator[DelayServer]:
    server = DelayServer(0.050)
    yield server
    server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture
def results_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """BENCH_RESULTS_PATH and BENCH_BASELINE_PATH pointed at empty folders."""
    results = tmp_path / "results"
    baseline = tmp_path / "baseline"
    monkeypatch.setenv("BENCH_RESULTS_PATH", str(results))
    monkeypatch.setenv("BENCH_BASELINE_PATH", str(baseline))
    return results, baseline


def _as_postgres(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL server program as the postgres account when we are root."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


class PgCluster:
    """A throwaway PostgreSQL 15 cluster with password authentication."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nself-bench-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "bench_owner"
        self.password = PG_PASSWORD
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (self.root, pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        _as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
            ]
        )
        pwfile.unlink()
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-w",
                "-o",
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.root} -c fsync=off "
                "-c max_connections=60",
                "start",
            ],
            timeout=60,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        try:
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop"],
                timeout=60,
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server programs are not installed")
    cluster = PgCluster()
    yield cluster
    cluster.stop()
