"""Integration tests of bench-db against a throwaway PostgreSQL cluster."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from nself_ops.bench import db, stats
from nself_ops.bench.errors import BenchInputError, GeneratorError, TargetDownError


@pytest.fixture(scope="module")
def target(pg_cluster) -> db.DbTarget:
    return db.DbTarget(
        "127.0.0.1", pg_cluster.port, pg_cluster.user, pg_cluster.password
    )


def connect(target: db.DbTarget, dbname: str, **options) -> psycopg.Connection:
    return psycopg.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        dbname=dbname,
        **options,
    )


@pytest.fixture(scope="module")
def app_database(target):
    """An 'application' database whose table must come through untouched."""
    db.ensure_database(target, "shop")
    with connect(target, "shop", autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS products (id int primary key)")
        conn.execute("TRUNCATE products")
        conn.execute("INSERT INTO products SELECT generate_series(1, 42)")
    return "shop"


def count_products(target: db.DbTarget, dbname: str) -> tuple[int, list[str]]:
    with connect(target, dbname) as conn:
        count = conn.execute("SELECT count(*) FROM products").fetchone()[0]
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
    return count, sorted(tables)


@pytest.mark.parametrize("workload", ["read", "write", "mixed"])
def test_pgbench_workloads_report_tps_and_log_percentiles(target, workload):
    out = db.bench_db(target, workload=workload, clients=4, duration=2)
    assert out["script"] == db.WORKLOADS[workload]
    assert out["database"] == "nself_bench"
    assert out["transactions"] > 0 and out["tps"] > 0
    assert 0 < out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"]
    assert out["latency_avg_ms"] > 0
    assert out["failed"] == 0


def test_new_connection_per_transaction_is_slower(target):
    kept = db.bench_db(target, workload="read", clients=2, duration=2)
    fresh = db.bench_db(target, workload="read", clients=2, duration=2, connect=True)
    assert fresh["connect"] is True
    assert fresh["latency_avg_ms"] > kept["latency_avg_ms"]
    # pgbench's own figure, read from its "(including reconnection times)" line:
    # close to the transactions the log holds over the run's length.
    assert fresh["tps"] == pytest.approx(
        fresh["transactions"] / fresh["duration_s"], rel=0.3
    )
    assert fresh["tps"] < kept["tps"]


def test_tps_is_read_from_either_form_of_pgbench_report():
    # pgbench 15's report, without and with --connect.
    plain = (
        "number of transactions actually processed: 31000\n"
        "latency average = 0.128 ms\n"
        "initial connection time = 4.321 ms\n"
        "tps = 15498.123456 (without initial connection time)\n"
    )
    fresh = (
        "number of transactions actually processed: 2400\n"
        "latency average = 1.667 ms\n"
        "average connection time = 1.412 ms\n"
        "tps = 1199.654321 (including reconnection times)\n"
    )
    assert db.parse_tps(plain) == 15498.123456
    assert db.parse_tps(fresh) == 1199.654321
    with pytest.raises(GeneratorError, match="cannot read the TPS figure.*tps = x"):
        db.parse_tps("tps = x (something else)\n")


def test_seconds_without_transactions_are_zero_samples():
    per_second = {100: [5, 500.0], 101: [10, 1000.0], 104: [8, 800.0], 105: [1, 1.0]}
    samples = db.per_second_samples(per_second)
    assert [(s["t"], s["requests"]) for s in samples] == [
        (1, 10),
        (2, 0),
        (3, 0),
        (4, 8),
    ]
    assert samples[1]["avg_ms"] is None and samples[0]["avg_ms"] == 0.1
    # A stall up to the end of the run: the seconds before the last are zero.
    tail = db.per_second_samples({100: [5, 5.0], 101: [5, 5.0]}, last_second=104)
    assert [(s["t"], s["requests"]) for s in tail] == [(1, 5), (2, 0), (3, 0)]


def _hold_lock_when_pgbench_runs(target, seconds: float, done: list) -> None:
    """Once pgbench's updates run, lock its accounts table for ``seconds``."""
    with connect(target, "nself_bench", autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query LIKE 'UPDATE pgbench_accounts%'"
                " AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if running:
                break
            time.sleep(0.02)
        with conn.transaction():
            conn.execute("LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
            locked = time.monotonic()
            # The stall itself: no update can finish while the lock is held.
            time.sleep(seconds)
        done.append(time.monotonic() - locked)


def test_a_stall_shows_as_zero_samples(target):
    done: list[float] = []
    db.bench_db(target, workload="write", clients=2, duration=1)  # tables exist
    locker = threading.Thread(
        target=_hold_lock_when_pgbench_runs, args=(target, 2.5, done)
    )
    locker.start()
    out = db.bench_db(target, workload="write", clients=2, duration=6)
    locker.join(timeout=60)
    assert done and done[0] >= 2.5
    samples = out["samples"]
    assert [s["t"] for s in samples] == list(range(1, len(samples) + 1))
    assert len(samples) >= 4
    stalled = [s for s in samples if s["requests"] == 0]
    assert stalled, samples
    assert all(s["avg_ms"] is None and s["rps"] == 0 for s in stalled)
    assert any(s["requests"] > 0 for s in samples)


def test_scratch_database_is_created_and_application_tables_untouched(
    target, app_database
):
    before = count_products(target, app_database)
    db.bench_db(target, workload="mixed", clients=2, duration=1)
    assert count_products(target, app_database) == before == (42, ["products"])
    with connect(target, "nself_bench") as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    assert {"pgbench_accounts", "pgbench_branches"} <= names


def test_application_database_is_refused_as_scratch(target, app_database):
    with pytest.raises(BenchInputError, match="refusing to benchmark in 'shop'"):
        db.bench_db(target, database="shop", protected=["shop"], duration=1)
    with pytest.raises(BenchInputError, match="refusing"):
        db.bench_db(target, database="postgres", duration=1)


def test_password_goes_in_the_environment_only(target, tmp_path):
    argv = db.build_command(
        target,
        "nself_bench",
        workload="read",
        clients=2,
        duration=1,
        connect=False,
        log_prefix=str(tmp_path / "log"),
    )
    assert target.password not in " ".join(argv)
    assert target.env()["PGPASSWORD"] == target.password
    assert target.password not in repr(target)


def test_wrong_password_and_down_server_give_clear_messages(pg_cluster):
    wrong = db.DbTarget("127.0.0.1", pg_cluster.port, pg_cluster.user, "nope")
    with pytest.raises(BenchInputError, match="refused the password"):
        db.bench_db(wrong, duration=1)
    from bench_servers import free_port

    down = db.DbTarget("127.0.0.1", free_port(), "x", "y")
    with pytest.raises(TargetDownError, match="does not answer"):
        db.bench_db(down, duration=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"workload": "upsert"},
            "unknown workload 'upsert'; valid: read, write, mixed",
        ),
        ({"clients": 0}, "clients must be a whole number above 0, got 0"),
        ({"duration": -1}, "duration must be greater than zero, got -1"),
        ({"via": "proxy"}, "unknown --via 'proxy'; valid: direct, pooler"),
    ],
)
def test_bad_db_options_are_refused(target, kwargs, match):
    with pytest.raises(BenchInputError, match=match):
        db.bench_db(target, **kwargs)


def test_log_lines_give_latencies_failures_and_seconds():
    lines = [
        "0 1 1500 0 1700000000 100",
        "1 1 2500 0 1700000000 900",
        "0 2 failed 0 1700000001 10",
        "1 2 3500 0 1700000001 20",
    ]
    latencies, failed, per_second = db.parse_log_lines(lines)
    assert latencies == [1500.0, 2500.0, 3500.0]
    assert failed == 1
    assert per_second[1700000000] == [2, 4000.0]
    assert stats.percentile(latencies, 99) == 3500.0


def test_a_missing_pooler_is_named_as_such(target):
    from bench_servers import free_port

    from nself_ops.bench.errors import GeneratorError

    pooler = db.DbTarget(target.host, free_port(), target.user, target.password)
    with pytest.raises(
        GeneratorError, match="pooler does not answer.*refused.*PgBouncer"
    ):
        db.bench_db(pooler, via="pooler", init_target=target, duration=1)
