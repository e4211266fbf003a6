"""Scaling the local stack's services on the process runtime, against the real stack."""

from __future__ import annotations

import collections
import http.client
import threading
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.stack

NGINX = ("127.0.0.1", 18080)


def replica_of(path: str = "/api/health", address=NGINX) -> str:
    """One request on a fresh connection; returns the replica that answered."""
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, (path, response.status)
        return response.getheader("X-Replica")
    finally:
        conn.close()


def api_status(invoke) -> dict:
    result = invoke("scale-status", "--service", "api", "--format", "json")
    assert result.returncode == 0, result
    (entry,) = result.json()["services"]
    return entry


@pytest.fixture
def scaling_file(local_stack, state_root) -> Path:
    return state_root / "local" / "scaling.yaml"


@pytest.fixture
def one_api_replica(local_stack, invoke):
    """Each test starts and ends with one api replica."""
    assert invoke("scale-in", "--service", "api", "--replicas", "1").returncode == 0
    yield
    result = invoke("scale-in", "--service", "api", "--replicas", "1")
    assert result.returncode == 0, result


def supervisor_pids(state_root) -> dict[str, int]:
    from ansible.module_utils.nself.supervisor import Supervisor

    processes = Supervisor(str(state_root / "local")).processes()
    return {name: info["pid"] for name, info in processes.items()}


def test_dry_run_scale_out_shows_the_change_and_makes_none(
    one_api_replica, invoke, scaling_file, state_root
):
    before = scaling_file.read_text()
    pids = supervisor_pids(state_root)
    result = invoke("scale-out", "--service", "api", "--replicas", "3", "--dry-run")
    assert result.returncode == 0, result
    assert "+    server 127.0.0.1:18103;" in result.stdout
    assert "+[program:api_3]" in result.stdout
    assert "+      replicas: 3" in result.stdout
    assert scaling_file.read_text() == before
    assert supervisor_pids(state_root) == pids
    assert api_status(invoke)["running"] == 1


def test_scale_out_to_three_spreads_requests_over_all(one_api_replica, invoke):
    result = invoke("scale-out", "--service", "api", "--replicas", "3")
    assert result.returncode == 0, result
    entry = api_status(invoke)
    assert (entry["replicas"], entry["running"]) == (3, 3)
    assert [i["endpoint"] for i in entry["instances"]] == [
        "127.0.0.1:18101",
        "127.0.0.1:18102",
        "127.0.0.1:18103",
    ]
    counts = collections.Counter(replica_of() for _ in range(300))
    assert set(counts) == {"api_1", "api_2", "api_3"}
    assert min(counts.values()) >= 60, counts

    again = invoke("scale-out", "--service", "api", "--replicas", "3")
    assert again.recap()["changed"] == 0, again


def test_scale_in_drains_back_to_one(one_api_replica, invoke, state_root):
    assert invoke("scale-out", "--service", "api", "--replicas", "3").returncode == 0
    result = invoke("scale-in", "--service", "api", "--replicas", "1")
    assert result.returncode == 0, result
    entry = api_status(invoke)
    assert (entry["replicas"], entry["running"]) == (1, 1)
    upstream = (state_root / "local" / "nginx" / "upstreams" / "api.conf").read_text()
    assert "127.0.0.1:18102" not in upstream
    assert {replica_of() for _ in range(30)} == {"api_1"}
    again = invoke("scale-in", "--service", "api", "--replicas", "1")
    assert again.recap()["changed"] == 0, again


def test_without_a_count_one_more_then_one_fewer(one_api_replica, invoke):
    assert invoke("scale-out", "--service", "api").returncode == 0
    assert api_status(invoke)["running"] == 2
    assert invoke("scale-in", "--service", "api").returncode == 0
    assert api_status(invoke)["running"] == 1


def test_scaling_while_requests_flow_fails_none(one_api_replica, invoke):
    stop = threading.Event()
    outcomes: list[tuple[str, str | None]] = []

    def client():
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                outcomes.append(("ok", replica_of("/api/products/1")))
            except Exception as exc:  # every failure counts, whatever its kind
                outcomes.append(("failed", repr(exc)))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        up = invoke("scale-out", "--service", "api", "--replicas", "3")
        during_out = len(outcomes)
        down = invoke("scale-in", "--service", "api", "--replicas", "1")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert up.returncode == 0, up
    assert down.returncode == 0, down
    failures = [detail for kind, detail in outcomes if kind == "failed"]
    assert failures == []
    served = {detail for kind, detail in outcomes if kind == "ok"}
    assert served == {"api_1", "api_2", "api_3"}
    assert during_out > 50 and len(outcomes) - during_out > 50


def test_nself_grammar_scales_too(one_api_replica, nself):
    result = nself("scale", "out", "api", "--replicas", "2")
    assert result.returncode == 0, result
    status = nself("scale", "status", "api", "--format", "json")
    assert status.json()["services"][0]["running"] == 2


# -- resources -----------------------------------------------------------------------


def cgroup_file(instance: str, controller: str, name: str) -> Path:
    return Path("/sys/fs/cgroup", controller, "nself", "local", instance, name)


def test_dry_run_scale_up_changes_no_limit(one_api_replica, invoke, scaling_file):
    before = scaling_file.read_text()
    limit = cgroup_file("api_1", "memory", "memory.limit_in_bytes")
    old = limit.read_text()
    result = invoke("scale-up", "--service", "api", "--memory", "300M", "--dry-run")
    assert result.returncode == 0, result
    assert "memory: 300M" in result.stdout
    assert scaling_file.read_text() == before
    assert limit.read_text() == old


def test_memory_limit_is_enforced_by_the_kernel(one_api_replica, invoke):
    result = invoke("scale-up", "--service", "api", "--memory", "200M", "--cpu", "1")
    assert result.returncode == 0, result
    entry = api_status(invoke)
    assert entry["resources"]["memory"] == "200M"
    assert entry["resources"]["reservations"]["memory"] == "100M"
    limit = cgroup_file("api_1", "memory", "memory.limit_in_bytes")
    assert int(limit.read_text()) == 200 * 1024**2
    quota = cgroup_file("api_1", "cpu", "cpu.cfs_quota_us")
    assert int(quota.read_text()) == 100_000

    oom = cgroup_file("api_1", "memory", "memory.oom_control")
    kills_before = int(
        dict(line.split() for line in oom.read_text().splitlines())["oom_kill"]
    )
    conn = http.client.HTTPConnection("127.0.0.1", 18101, timeout=60)
    try:
        conn.request("POST", "/api/debug/allocate?mb=400")
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        status = None  # the worker was killed while it answered
    finally:
        conn.close()
    assert status != 200
    kills = int(dict(line.split() for line in oom.read_text().splitlines())["oom_kill"])
    assert kills > kills_before

    # Restarted by its supervisor, the replica answers again, still inside its limit.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            assert replica_of(address=("127.0.0.1", 18101)) == "api_1"
            break
        except (OSError, AssertionError):
            time.sleep(0.2)
    else:
        pytest.fail("api_1 did not come back after the kernel killed it")
    assert int(limit.read_text()) == 200 * 1024**2

    again = invoke("scale-up", "--service", "api", "--memory", "200M", "--cpu", "1")
    assert again.recap()["changed"] == 0, again


def test_new_replicas_start_with_the_service_limits(one_api_replica, invoke):
    assert invoke("scale-up", "--service", "api", "--memory", "256M").returncode == 0
    assert invoke("scale-out", "--service", "api", "--replicas", "2").returncode == 0
    limit = cgroup_file("api_2", "memory", "memory.limit_in_bytes")
    assert int(limit.read_text()) == 256 * 1024**2


def test_scale_down_without_a_value_halves_the_limit(one_api_replica, invoke):
    assert invoke("scale-up", "--service", "api", "--memory", "400M").returncode == 0
    result = invoke("scale-down", "--service", "api")
    assert result.returncode == 0, result
    assert api_status(invoke)["resources"]["memory"] == "200M"


def pg_setting(state_root, name: str) -> str:
    secret = state_root / "local" / "secrets" / "postgres_superuser_password"
    with psycopg.connect(
        host="127.0.0.1",
        port=15432,
        user="postgres",
        password=secret.read_text().strip(),
        dbname="shop",
    ) as conn:
        return conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0]


def test_scale_up_postgres_retunes_its_memory_settings(local_stack, invoke, state_root):
    result = invoke("scale-up", "--service", "postgres", "--memory", "2G")
    assert result.returncode == 0, result
    assert pg_setting(state_root, "shared_buffers") == "512MB"
    assert pg_setting(state_root, "effective_cache_size") == "1536MB"
    assert pg_setting(state_root, "maintenance_work_mem") == "128MB"
    again = invoke("scale-up", "--service", "postgres", "--memory", "2G")
    assert again.recap()["changed"] == 0, again

    up = invoke("up")
    assert up.recap()["changed"] == 0, up

    result = invoke("scale-down", "--service", "postgres")
    assert result.returncode == 0, result
    assert pg_setting(state_root, "shared_buffers") == "256MB"

    # The restart is short and the api's pool reconnects by itself.
    deadline = time.monotonic() + 30
    while True:
        try:
            assert replica_of() == "api_1"
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scale-out", "--service", "api", "--replicas=-1"], "valid counts: 0 to 10"),
        (
            ["scale-out", "--service", "api", "--replicas", "11"],
            "valid counts: 0 to 10",
        ),
        (["scale-up", "--service", "api", "--memory", "4X"], "invalid memory '4X'"),
        (["scale-up", "--service", "api", "--cpu", "0"], "invalid cpu '0'"),
        (["scale-up", "--service", "api", "--cpu=-1"], "invalid cpu '-1'"),
        (["scale-out", "--service", "mysql"], "unknown service 'mysql'"),
        (["scale-out", "--service", "pgbouncer"], "unknown service 'pgbouncer'"),
        (
            ["scale-out", "--service", "postgres", "--replicas", "2"],
            "cannot have replicas",
        ),
        (["scale-out", "--service", "redis"], "cannot have replicas"),
    ],
    ids=[
        "negative-replicas",
        "above-ceiling",
        "bad-memory",
        "zero-cpu",
        "negative-cpu",
        "unknown-service",
        "service-not-running",
        "postgres-replicas",
        "redis-replicas",
    ],
)
def test_bad_input_changes_nothing(
    one_api_replica, invoke, scaling_file, state_root, args, message
):
    before = scaling_file.read_text()
    pids = supervisor_pids(state_root)
    result = invoke(*args)
    assert result.returncode != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert scaling_file.read_text() == before
    assert supervisor_pids(state_root) == pids


def test_a_rejected_upstream_leaves_nginx_serving_the_previous_one(
    local_stack, state_root
):
    from nself_ops.ansible import AnsibleFailure, run_module

    upstream = state_root / "local" / "nginx" / "upstreams" / "api.conf"
    before = upstream.read_text()
    with pytest.raises(AnsibleFailure) as failure:
        run_module(
            "local",
            "nself_nginx_config",
            {
                "path": str(upstream),
                "content": "upstream api_backend { least_conn; no_such_directive; }",
                "main_config": "{{ nself_state_dir }}/nginx/nginx.conf",
                "prefix": "{{ nself_state_dir }}/nginx",
                "error_log": "{{ nself_state_dir }}/logs/nginx_error.log",
                "user": "{{ nself_service_user }}",
            },
        )
    message = str(failure.value)
    assert "nginx rejected" in message
    assert 'unknown directive "no_such_directive"' in message
    assert upstream.read_text() == before
    assert replica_of() == "api_1"
