"""Scaling the local stack's services on the process runtime, against the real stack."""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.stack

NGINX = ("127.0.0.1", 18080)
MIB = 1024**2
GIB = 1024**3


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


def post_cart() -> str:
    """POST /api/cart on a fresh connection; returns the replica that answered.

    nginx never retries a POST on another replica, so a replica that stops before
    it has left the upstream shows here as a failed request. (A connection kept
    alive to nginx itself can be closed while idle by a reload, as with any nginx
    reload; clients retry such a connection, so the test opens one per request.)
    """
    conn = http.client.HTTPConnection(*NGINX, timeout=10)
    try:
        body = json.dumps({"user_id": 1, "product_id": 1, "quantity": 1})
        conn.request(
            "POST", "/api/cart", body=body, headers={"Content-Type": "application/json"}
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status
        return response.getheader("X-Replica")
    finally:
        conn.close()


def test_scaling_while_requests_flow_fails_none(one_api_replica, invoke, state_root):
    error_log = state_root / "local" / "logs" / "nginx_error.log"
    log_start = error_log.stat().st_size if error_log.exists() else 0
    stop = threading.Event()
    outcomes: list[tuple[str, str | None]] = []

    def getter():
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                outcomes.append(("ok", replica_of("/api/products/1")))
            except Exception as exc:  # every failure counts, whatever its kind
                outcomes.append(("failed", repr(exc)))

    def poster():
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                outcomes.append(("ok", post_cart()))
            except Exception as exc:  # every failure counts, whatever its kind
                outcomes.append(("failed", repr(exc)))

    threads = [threading.Thread(target=getter) for _ in range(2)]
    threads += [threading.Thread(target=poster) for _ in range(2)]
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
    assert during_out > 10 and len(outcomes) - during_out > 10
    # nginx saw no replica refuse or drop a request: none was retried elsewhere.
    with error_log.open() as handle:
        handle.seek(log_start)
        upstream_errors = [
            line for line in handle if "upstream" in line and "[error]" in line
        ]
    assert upstream_errors == []


def test_nself_grammar_scales_too(one_api_replica, nself):
    result = nself("scale", "out", "api", "--replicas", "2")
    assert result.returncode == 0, result
    status = nself("scale", "status", "api", "--format", "json")
    assert status.json()["services"][0]["running"] == 2


# -- resources -----------------------------------------------------------------------


@pytest.fixture
def cgroups(local_stack, state_root):
    """The local environment's cgroups, read through the runtime's own helpers
    (cgroup v1 or v2 alike); the tests need a host that can enforce limits."""
    from ansible.module_utils.nself.cgroups import Cgroups

    groups = Cgroups(str(state_root / "local"), "local")
    if os.geteuid() != 0:
        pytest.skip("limits need root to create cgroups")
    reason = groups.unavailable()
    if reason:
        pytest.skip(reason)
    return groups


def limits_of(cgroups, instance: str) -> dict:
    return (cgroups.current(instance) or {}).get("limits", {})


def instance_pid(state_root, instance: str) -> int:
    return supervisor_pids(state_root)[instance]


def test_dry_run_scale_up_changes_no_limit(
    one_api_replica, invoke, scaling_file, cgroups
):
    before = scaling_file.read_text()
    old = limits_of(cgroups, "api_1")
    result = invoke("scale-up", "--service", "api", "--memory", "300M", "--dry-run")
    assert result.returncode == 0, result
    assert "memory: 300M" in result.stdout
    assert scaling_file.read_text() == before
    assert limits_of(cgroups, "api_1") == old


def test_memory_limit_is_enforced_by_the_kernel(
    one_api_replica, invoke, cgroups, state_root
):
    result = invoke("scale-up", "--service", "api", "--memory", "200M", "--cpu", "1")
    assert result.returncode == 0, result
    entry = api_status(invoke)
    assert entry["resources"]["memory"] == "200M"
    assert entry["resources"]["reservations"]["memory"] == "100M"
    assert entry["limits_in_force"] is True
    assert entry["instances"][0]["limits"] == {"memory": "200M", "cpus": "1"}
    assert limits_of(cgroups, "api_1") == {"memory": 200 * MIB, "cpus": 1.0}

    kills_before = cgroups.oom_kills("api_1")
    conn = http.client.HTTPConnection("127.0.0.1", 18101, timeout=60)
    try:
        conn.request("POST", "/api/debug/allocate?mb=400")
        status = conn.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        status = None  # the worker was killed while it answered
    finally:
        conn.close()
    assert status != 200
    assert cgroups.oom_kills("api_1") > kills_before

    # The replica answers again, from a process inside the same limits.
    wait_until_answers("api_1", 18101)
    assert limits_of(cgroups, "api_1") == {"memory": 200 * MIB, "cpus": 1.0}
    members = cgroups.members("api_1")
    assert instance_pid(state_root, "api_1") in members
    assert len(members) >= 2  # the server and its worker

    again = invoke("scale-up", "--service", "api", "--memory", "200M", "--cpu", "1")
    assert again.recap()["changed"] == 0, again


def wait_until_answers(replica: str, port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            assert replica_of(address=("127.0.0.1", port)) == replica
            return
        except (OSError, AssertionError, http.client.HTTPException):
            if time.monotonic() > deadline:
                pytest.fail("%s did not answer again within 60 s" % replica)
            time.sleep(0.2)


def test_a_replica_restarted_by_its_supervisor_keeps_its_limits(
    one_api_replica, invoke, cgroups, state_root
):
    result = invoke("scale-up", "--service", "api", "--memory", "256M")
    assert result.returncode == 0, result
    old_pid = instance_pid(state_root, "api_1")
    os.killpg(old_pid, signal.SIGKILL)  # the whole replica dies at once
    deadline = time.monotonic() + 60
    while instance_pid(state_root, "api_1") in (0, old_pid):
        assert time.monotonic() < deadline, "supervisor did not restart api_1"
        time.sleep(0.1)
    wait_until_answers("api_1", 18101)
    new_pid = instance_pid(state_root, "api_1")
    assert new_pid != old_pid
    assert new_pid in cgroups.members("api_1")
    assert limits_of(cgroups, "api_1")["memory"] == 256 * MIB


def test_limits_off_the_kernels_grid_converge_once(one_api_replica, invoke, cgroups):
    # 1.3G is no whole number of pages and 0.29 CPUs no exact binary fraction: the
    # kernel's rounding must not make every run look like a change.
    args = ("scale-up", "--service", "api", "--memory", "1.3G", "--cpu", "0.29")
    assert invoke(*args).returncode == 0
    assert limits_of(cgroups, "api_1")["cpus"] == 0.29
    again = invoke(*args)
    assert again.recap()["changed"] == 0, again
    assert api_status(invoke)["limits_in_force"] is True
    # Later tests measure the api: give it a whole CPU again.
    assert invoke("scale-up", "--service", "api", "--cpu", "1").returncode == 0


def test_new_replicas_start_with_the_service_limits(one_api_replica, invoke, cgroups):
    assert invoke("scale-up", "--service", "api", "--memory", "256M").returncode == 0
    assert invoke("scale-out", "--service", "api", "--replicas", "2").returncode == 0
    assert limits_of(cgroups, "api_2")["memory"] == 256 * MIB
    entry = api_status(invoke)
    assert [i["limits"]["memory"] for i in entry["instances"]] == ["256M", "256M"]


def test_scale_down_without_a_value_halves_the_limit(one_api_replica, invoke, cgroups):
    assert invoke("scale-up", "--service", "api", "--memory", "400M").returncode == 0
    result = invoke("scale-down", "--service", "api")
    assert result.returncode == 0, result
    assert api_status(invoke)["resources"]["memory"] == "200M"
    assert limits_of(cgroups, "api_1")["memory"] == 200 * MIB


def pg_value(state_root, sql: str, *params):
    """The first column of the first row of a query, as the superuser."""
    secret = state_root / "local" / "secrets" / "postgres_superuser_password"
    with psycopg.connect(
        host="127.0.0.1",
        port=15432,
        user="postgres",
        password=secret.read_text().strip(),
        dbname="shop",
    ) as conn:
        return conn.execute(sql, params).fetchone()[0]


def pg_setting(state_root, name: str) -> str:
    return pg_value(state_root, "SELECT current_setting(%s)", name)


def pg_started(state_root):
    return pg_value(state_root, "SELECT pg_postmaster_start_time()")


def test_scale_up_postgres_retunes_its_memory_settings(
    local_stack, invoke, state_root, cgroups
):
    result = invoke("scale-up", "--service", "postgres", "--memory", "2G")
    assert result.returncode == 0, result
    assert pg_setting(state_root, "shared_buffers") == "512MB"
    assert pg_setting(state_root, "effective_cache_size") == "1536MB"
    assert pg_setting(state_root, "maintenance_work_mem") == "128MB"
    assert pg_setting(state_root, "work_mem") == "5MB"
    assert limits_of(cgroups, "postgres")["memory"] == 2 * GIB
    again = invoke("scale-up", "--service", "postgres", "--memory", "2G")
    assert again.recap()["changed"] == 0, again

    up = invoke("up")
    assert up.recap()["changed"] == 0, up

    # Halving: PostgreSQL is retuned and restarted first, then its limit lowered.
    started = pg_started(state_root)
    result = invoke("scale-down", "--service", "postgres")
    assert result.returncode == 0, result
    assert pg_setting(state_root, "shared_buffers") == "256MB"
    assert pg_setting(state_root, "work_mem") == "4MB"
    assert pg_started(state_root) != started
    assert limits_of(cgroups, "postgres")["memory"] == GIB
    # The retune before the lower limit ran; the one after it was skipped.
    lines = [line for line in result.stdout.splitlines() if line.strip()]

    tasks = [
        (line, lines[i + 1])
        for i, line in enumerate(lines)
        if line.startswith("TASK [")
    ]
    ran = [task for task, outcome in tasks if outcome.startswith("included:")]
    retunes = [task for task in ran if "PostgreSQL's memory settings" in task]
    assert len(retunes) == 1 and "fit its smaller memory limit]" in retunes[0], ran
    names = [task for task, _ in tasks]
    limit = next(task for task in names if "limits are applied to postgres]" in task)
    assert names.index(retunes[0]) < names.index(limit)

    # The restart is short and the api's pool reconnects by itself.
    deadline = time.monotonic() + 30
    while True:
        try:
            assert replica_of() == "api_1"
            break
        except (AssertionError, OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scale-out", "--service", "api", "--replicas=-1"], "valid counts: 1 to 10"),
        (
            ["scale-out", "--service", "api", "--replicas", "11"],
            "valid counts: 1 to 10",
        ),
        (
            ["scale-in", "--service", "api", "--replicas", "0"],
            "invalid replica count 0 for api (it is behind the load balancer); "
            "valid counts: 1 to 10",
        ),
        (["scale-up", "--service", "api", "--memory", "4X"], "invalid memory '4X'"),
        (["scale-up", "--service", "api", "--cpu", "0"], "invalid cpu '0'"),
        (["scale-up", "--service", "api", "--cpu=-1"], "invalid cpu '-1'"),
        (["scale-up", "--service", "api", "--cpu", "nan"], "invalid cpu 'nan'"),
        (["scale-up", "--service", "api", "--cpu", "0.001"], "of at least 0.01"),
        (["scale-up", "--service", "api", "--memory", "1"], "of at least 6M"),
        (["scale-up", "--service", "api", "--cpu", "64"], "valid values are from"),
        (["scale-out", "--service", "mysql"], "unknown service 'mysql'"),
        (["scale-out", "--service", "mysql"], "postgres, pgbouncer, redis, api, nginx"),
        (
            ["scale-out", "--service", "postgres", "--replicas", "2"],
            "cannot have replicas",
        ),
        (["scale-out", "--service", "redis"], "cannot have replicas"),
    ],
    ids=[
        "negative-replicas",
        "above-ceiling",
        "zero-behind-load-balancer",
        "bad-memory",
        "zero-cpu",
        "negative-cpu",
        "nan-cpu",
        "tiny-cpu",
        "tiny-memory",
        "cpu-above-host",
        "unknown-service",
        "valid-services-named",
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


def upstream_args(upstream: Path, content: str) -> dict:
    return {
        "path": str(upstream),
        "content": content,
        "main_config": "{{ nself_state_dir }}/nginx/nginx.conf",
        "prefix": "{{ nself_state_dir }}/nginx",
        "error_log": "{{ nself_state_dir }}/logs/nginx_error.log",
        "user": "{{ nself_service_user }}",
    }


BAD_UPSTREAM = "upstream api_backend { least_conn; no_such_directive; }"


def test_a_rejected_upstream_leaves_nginx_serving_the_previous_one(
    local_stack, state_root
):
    from nself_ops.ansible import AnsibleFailure, run_module

    upstream = state_root / "local" / "nginx" / "upstreams" / "api.conf"
    before = upstream.read_text()
    with pytest.raises(AnsibleFailure) as failure:
        run_module("local", "nself_nginx_config", upstream_args(upstream, BAD_UPSTREAM))
    message = str(failure.value)
    assert "nginx rejected" in message
    assert 'unknown directive "no_such_directive"' in message
    assert upstream.read_text() == before
    assert replica_of() == "api_1"


def test_a_dry_run_validates_the_upstream_it_would_write(local_stack, state_root):
    from nself_ops.ansible import AnsibleFailure, run_module

    upstream = state_root / "local" / "nginx" / "upstreams" / "api.conf"
    before = upstream.read_text()
    with pytest.raises(AnsibleFailure) as failure:
        run_module(
            "local",
            "nself_nginx_config",
            upstream_args(upstream, BAD_UPSTREAM),
            check=True,
        )
    assert "nginx would reject" in str(failure.value)
    assert 'unknown directive "no_such_directive"' in str(failure.value)
    # A valid change passes the same validation and is still only reported.
    good = before.replace("least_conn;", "least_conn;\n    # a comment")
    assert good != before
    result = run_module(
        "local", "nself_nginx_config", upstream_args(upstream, good), check=True
    )
    assert result["changed"] is True
    assert upstream.read_text() == before
    assert replica_of() == "api_1"
