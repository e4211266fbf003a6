"""The local stack as `invoke up` leaves it: real processes, loopback only, healthy."""

from __future__ import annotations

import json
import urllib.request

import psycopg
import pytest

from nself_ops.envs import service_user

pytestmark = pytest.mark.stack

SERVICES = ("postgres", "pgbouncer", "redis", "api", "nginx")


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def superuser_conn(state_root, env: str = "local", port: int = 15432):
    secret = state_root / env / "secrets" / "postgres_superuser_password"
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user="postgres",
        password=secret.read_text().strip(),
        dbname="shop",
        autocommit=True,
    )


def test_status_json_reports_every_service_healthy(local_stack):
    assert local_stack["env"] == "local"
    assert local_stack["runtime"] == "process"
    assert local_stack["url"] == "http://127.0.0.1:18080"
    by_name = {s["name"]: s for s in local_stack["services"]}
    assert set(SERVICES) <= set(by_name)
    for name in SERVICES:
        entry = by_name[name]
        assert entry["healthy"] is True, entry
        assert entry["replicas"] == entry["running"] == 1
        assert all(e.startswith("127.0.0.1:") for e in entry["endpoints"])
    assert by_name["api"]["endpoints"] == ["127.0.0.1:18101"]


@pytest.mark.parametrize(
    ("program", "port"),
    [
        ("postgres", 15432),
        ("redis-server", 16379),
        ("pgbouncer", 16432),
        ("nginx", 18080),
        ("gunicorn", 18101),
    ],
)
def test_service_listens_on_loopback_only(host, local_stack, program, port):
    assert host.socket("tcp://127.0.0.1:%d" % port).is_listening
    listening = [
        s for s in host.socket.get_listening_sockets() if s.endswith(":%d" % port)
    ]
    assert listening == ["tcp://127.0.0.1:%d" % port], listening


@pytest.mark.parametrize(
    "program", ["postgres", "pgbouncer", "redis", "api_1", "nginx"]
)
def test_services_run_as_the_service_account(host, local_stack, state_root, program):
    from ansible.module_utils.nself.supervisor import Supervisor

    info = Supervisor(str(state_root / "local")).processes()[program]
    main = host.process.get(pid=info["pid"])
    # The program and every process it started (postgres' backends, nginx's workers,
    # gunicorn's workers).
    children = host.process.filter(ppid=info["pid"])
    assert {p.user for p in [main, *children]} == {service_user()}


def test_secrets_are_private_files(host, local_stack, state_root):
    secrets = state_root / "local" / "secrets"
    assert host.file(str(secrets)).mode == 0o700
    names = {p.name for p in secrets.iterdir()}
    expected = {
        "postgres_superuser_password",
        "postgres_app_password",
        "redis_password",
        "api.env",
    }
    assert expected <= names
    for name in names:
        assert host.file(str(secrets / name)).mode == 0o600, name
    for conf in (
        "redis/redis.conf",
        "postgres/postgresql.conf",
        "pgbouncer/pgbouncer.ini",
        "pgbouncer/userlist.txt",
    ):
        assert host.file(str(state_root / "local" / conf)).mode == 0o600, conf


def test_nginx_answers_healthz_itself(local_stack):
    status, _, body = get(local_stack["url"] + "/healthz")
    assert status == 200
    assert body == b"ok\n"


def test_stub_status_is_served(local_stack):
    status, _, body = get(local_stack["url"] + "/nginx_status")
    assert status == 200
    assert b"Active connections" in body


def test_request_through_nginx_reads_postgres_and_redis(local_stack):
    url = local_stack["url"]
    status, headers, body = get(url + "/api/health")
    assert status == 200
    health = json.loads(body)
    assert health["postgres"] is True
    assert health["redis"] is True
    assert headers["X-Replica"] == "api_1"

    # The products list is cached in Redis: the second read within the TTL is a hit.
    _, first, _ = get(url + "/api/products?limit=7")
    _, second, body = get(url + "/api/products?limit=7")
    assert (first["X-Cache"], second["X-Cache"]) == ("miss", "hit")
    assert len(json.loads(body)["products"]) == 7

    # Orders come from the seeded PostgreSQL database.
    _, headers, body = get(url + "/api/orders?user_id=42")
    orders = json.loads(body)["orders"]
    assert orders
    assert {o["user_id"] for o in orders} == {42}


def pgbouncer_conn(state_root, user: str, secret: str, dbname: str):
    password = (state_root / "local" / "secrets" / secret).read_text().strip()
    return psycopg.connect(
        host="127.0.0.1",
        port=16432,
        user=user,
        password=password,
        dbname=dbname,
        autocommit=True,
        # PgBouncer in transaction mode keeps no prepared statements per client.
        prepare_threshold=None,
    )


def test_pgbouncer_pools_the_applications_connections(local_stack, state_root):
    # The same rows as PostgreSQL itself answers with (other tests add orders).
    query = "SELECT count(*), max(id) FROM orders"
    with pgbouncer_conn(state_root, "shop", "postgres_app_password", "shop") as conn:
        pooled = conn.execute(query).fetchone()
    with superuser_conn(state_root) as direct:
        assert pooled == direct.execute(query).fetchone()
    assert pooled[0] >= 200_000
    # PgBouncer's own console lists the pool that query went through.
    with pgbouncer_conn(
        state_root, "postgres", "postgres_superuser_password", "pgbouncer"
    ) as admin:
        cur = admin.cursor()
        cur.execute("SHOW POOLS")
        columns = [c.name for c in cur.description]
        pools = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    shop = [p for p in pools if p["database"] == "shop" and p["user"] == "shop"]
    assert shop and shop[0]["pool_mode"] == "transaction"


def test_postgres_has_statement_statistics_and_hypopg(local_stack, state_root):
    with superuser_conn(state_root) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        plan = conn.execute(
            "EXPLAIN SELECT * FROM orders WHERE user_id = 42"
        ).fetchall()
    assert "pg_stat_statements" in preload
    assert {"pg_stat_statements", "hypopg"} <= extensions
    assert orders >= 200_000
    # orders.user_id is left unindexed on purpose, for the performance tools to find.
    assert "Seq Scan on orders" in " ".join(row[0] for row in plan)


def test_second_up_reports_no_change(local_stack, invoke):
    result = invoke("up")
    assert result.returncode == 0, result
    recap = result.recap()
    assert recap["changed"] == 0, result
    assert recap["failed"] == 0


def test_dry_run_of_running_stack_plans_nothing(local_stack, invoke):
    result = invoke("up", "--dry-run")
    assert result.returncode == 0, result
    assert result.recap()["changed"] == 0, result


def test_logs_show_the_service_log(local_stack, invoke):
    result = invoke("logs", "--service", "api", "--lines", "200")
    assert result.returncode == 0, result
    assert "api_1.log" in result.stdout
    assert "Booting worker" in result.stdout


def test_status_table_lists_every_service(local_stack, invoke):
    result = invoke("status")
    assert result.returncode == 0, result
    assert "Environment local: up" in result.stdout
    for name in SERVICES:
        assert name in result.stdout


def test_nself_status_runs_the_same_task(local_stack, nself):
    result = nself("status", "--format", "json")
    assert result.returncode == 0, result
    data = result.json()
    assert data["env"] == "local"
    assert data["up"] is True


def test_output_cut_short_by_a_closed_pipe_is_quiet(local_stack):
    import subprocess
    import sys
    from pathlib import Path

    invoke_bin = Path(sys.executable).parent / "invoke"
    proc = subprocess.Popen(
        [str(invoke_bin), "status", "--format", "json"],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The reader goes away before the output comes, as `| head -1` does after one line.
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in err
    assert b"BrokenPipeError" not in err
