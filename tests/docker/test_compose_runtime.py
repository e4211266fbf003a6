"""The compose runtime against a real Docker Engine: what it does is read back from the
engine's API (containers by Compose's labels, their HostConfig), never from its own
report."""

from __future__ import annotations

import pytest
import yaml
from ansible.module_utils.nself import scaling
from ansible.module_utils.nself.compose import ComposeRuntime
from ansible.module_utils.nself.runtime import RuntimeFailure, get_runtime

pytestmark = pytest.mark.docker

MIB = 1024**2
LIMITS = {
    "limits": {"memory": 64 * MIB, "cpus": 0.5},
    "reservations": {"memory": 32 * MIB},
}


def runtime(stack) -> ComposeRuntime:
    return get_runtime("compose", str(stack["state_dir"]), "test", stack["options"])


def containers(client, stack, status=None) -> list:
    """The project's api containers, by number, as the engine lists them."""
    return containers_of(client, stack, "api", status)


def containers_of(client, stack, service, status=None) -> list:
    filters = {
        "label": [
            "com.docker.compose.project=%s" % stack["project"],
            "com.docker.compose.service=%s" % service,
        ]
    }
    found = client.containers.list(all=True, filters=filters, ignore_removed=True)
    if status:
        found = [c for c in found if c.status == status]
    return sorted(
        found, key=lambda c: int(c.labels["com.docker.compose.container-number"])
    )


def override(stack) -> dict:
    return yaml.safe_load(stack["override"].read_text())


def test_scale_out_from_1_to_3_starts_healthy_replicas(docker_client, compose_stack):
    rt = runtime(compose_stack)
    assert rt.converge("api", 1, check=False).changed
    assert len(containers(docker_client, compose_stack, "running")) == 1
    planned = rt.planned_endpoints("api", 3)

    change = rt.grow("api", 3, check=False)

    assert change.changed
    running = containers(docker_client, compose_stack, "running")
    assert [c.labels["com.docker.compose.container-number"] for c in running] == [
        "1",
        "2",
        "3",
    ]
    # Every replica passed its health check: each answers HTTP on its own port.
    for container in running:
        container.reload()
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
    assert override(compose_stack)["services"]["api"]["deploy"]["replicas"] == 3
    instances = rt.instances("api")
    assert [i.endpoint for i in instances] == ["%s:8080" % c.name for c in running]
    # The load balancer was told the names Compose then gave the new replicas.
    assert planned == [i.endpoint for i in instances]
    assert rt.planned_endpoints("api", 2) == planned[:2]
    assert all(i.running and i.pid for i in instances)


def test_scale_in_from_3_to_1_keeps_the_first_replica(docker_client, compose_stack):
    rt = runtime(compose_stack)
    rt.converge("api", 3, check=False)
    first = containers(docker_client, compose_stack)[0]

    change = rt.shrink("api", 1, check=False)

    assert change.changed
    left = containers(docker_client, compose_stack)
    assert [c.id for c in left] == [first.id]
    assert left[0].status == "running"
    assert override(compose_stack)["services"]["api"]["deploy"]["replicas"] == 1
    assert [i.name for i in rt.instances("api")] == [first.name]


def test_resource_limits_converge_and_read_back(docker_client, compose_stack):
    rt = runtime(compose_stack)
    rt.converge("api", 2, check=False)

    change = rt.set_resources("api", LIMITS, check=False)

    assert change.changed
    running = containers(docker_client, compose_stack, "running")
    assert len(running) == 2
    for container in running:
        host = container.attrs["HostConfig"]
        assert host["Memory"] == 64 * MIB
        assert host["NanoCpus"] == 500_000_000
        assert host["MemoryReservation"] == 32 * MIB
    deploy = override(compose_stack)["services"]["api"]["deploy"]
    assert deploy == {
        "replicas": 2,
        "resources": {
            "limits": {"memory": "64M", "cpus": "0.5"},
            "reservations": {"memory": "32M"},
        },
    }
    # The engine counts what they use, within the limit.
    usage = rt.usage(rt.instances("api"))
    assert sorted(usage) == sorted(c.name for c in running)
    assert all(0 < u["memory_bytes"] <= 64 * MIB for u in usage.values())

    rt.set_resources("api", {"limits": {"memory": 96 * MIB}}, check=False)
    for container in containers(docker_client, compose_stack, "running"):
        assert container.attrs["HostConfig"]["Memory"] == 96 * MIB
        assert container.attrs["HostConfig"]["NanoCpus"] == 0


def test_check_mode_reports_the_diff_and_changes_nothing(docker_client, compose_stack):
    rt = runtime(compose_stack)
    rt.converge("api", 1, check=False)
    before_text = compose_stack["override"].read_text()
    before_ids = [c.id for c in containers(docker_client, compose_stack)]

    grow = rt.grow("api", 3, check=True)
    resize = rt.set_resources("api", LIMITS, check=True)

    assert grow.changed
    assert any("start 2 more replica(s) of api" in a for a in grow.actions)
    (diff,) = grow.diffs
    assert diff["before_header"] == str(compose_stack["override"])
    assert "replicas: 1" in diff["before"]
    assert "replicas: 3" in diff["after"]
    assert resize.changed
    assert any(
        a.startswith("recreate %s_api_1" % compose_stack["project"])
        for a in resize.actions
    )
    assert "memory: 64M" in resize.diffs[0]["after"]
    # Nothing moved: the same containers, with no limits, and the same file.
    after = containers(docker_client, compose_stack)
    assert [c.id for c in after] == before_ids
    assert after[0].attrs["HostConfig"]["Memory"] == 0
    assert compose_stack["override"].read_text() == before_text


def test_check_mode_before_the_first_scale_writes_no_file(compose_stack):
    change = runtime(compose_stack).converge("api", 2, check=True)

    assert change.changed
    assert change.diffs[0]["before"] == ""
    assert not compose_stack["override"].exists()


def test_a_second_converge_reports_no_change(docker_client, compose_stack):
    rt = runtime(compose_stack)
    rt.converge("api", 2, check=False)
    rt.set_resources("api", LIMITS, check=False)
    ids = [c.id for c in containers(docker_client, compose_stack)]
    text = compose_stack["override"].read_text()

    again = rt.converge("api", 2, check=False)
    resized_again = rt.set_resources("api", LIMITS, check=False)

    assert not again.changed and not again.actions and not again.diffs
    assert not resized_again.changed
    assert [c.id for c in containers(docker_client, compose_stack)] == ids
    assert compose_stack["override"].read_text() == text


def test_scaling_yaml_is_the_desired_state(docker_client, compose_stack):
    """Resources recorded in scaling.yaml are applied when the service is scaled."""
    state_dir = str(compose_stack["state_dir"])
    desired = {
        "services": {
            "api": {
                "deploy": {
                    "replicas": 2,
                    "resources": {"limits": {"memory": "48M", "cpus": "0.25"}},
                }
            }
        }
    }
    (compose_stack["state_dir"] / "scaling.yaml").write_text(scaling.dump(desired))

    runtime(compose_stack).converge("api", 2, check=False)

    running = containers(docker_client, compose_stack, "running")
    assert len(running) == 2
    for container in running:
        assert container.attrs["HostConfig"]["Memory"] == 48 * MIB
        assert container.attrs["HostConfig"]["NanoCpus"] == 250_000_000
    assert scaling.desired_replicas(state_dir, "api") == 2


def test_limits_the_engine_would_refuse_are_refused_first(docker_client, compose_stack):
    """Compose removes the old containers before the engine refuses the new ones, so
    such limits must be caught before anything is touched."""
    rt = runtime(compose_stack)
    rt.converge("api", 1, check=False)
    text = compose_stack["override"].read_text()
    ids = [c.id for c in containers(docker_client, compose_stack, "running")]

    with pytest.raises(RuntimeFailure, match="below the engine's minimum of 6M"):
        rt.set_resources("api", {"limits": {"memory": 1 * MIB}}, check=False)
    with pytest.raises(RuntimeFailure, match="cpus 64 is more than the"):
        rt.set_resources("api", {"limits": {"cpus": 64}}, check=False)

    assert compose_stack["override"].read_text() == text
    assert [c.id for c in containers(docker_client, compose_stack, "running")] == ids


def test_the_kernel_holds_a_replica_to_its_cpu_limit(docker_client, compose_stack):
    rt = runtime(compose_stack)
    rt.set_resources("spin", {"limits": {"cpus": 0.25}}, check=False)

    (spin,) = rt.instances("spin")
    assert docker_client.containers.get(spin.name).attrs["HostConfig"]["NanoCpus"] == (
        250_000_000
    )
    # A replica that would use a whole core gets a quarter of one.
    cpu = rt.usage([spin])[spin.name]["cpu_percent"]
    assert 0 < cpu <= 35


def test_a_replica_over_its_memory_limit_is_killed_by_the_kernel(
    docker_client, compose_stack
):
    rt = runtime(compose_stack)
    with pytest.raises(RuntimeFailure, match="exited with code 137"):
        rt.set_resources("hog", {"limits": {"memory": 32 * MIB}}, check=False)

    (hog,) = containers_of(docker_client, compose_stack, "hog")
    assert hog.attrs["HostConfig"]["Memory"] == 32 * MIB
    assert hog.attrs["State"]["OOMKilled"] is True


def test_a_replica_that_exits_fails_at_once_with_its_logs(compose_stack):
    with pytest.raises(RuntimeFailure, match="exited with code 3") as failure:
        runtime(compose_stack).converge("broken", 1, check=False, wait_timeout=600)

    # Its own words are in the message, and no deadline was waited for.
    assert "cannot start" in str(failure.value)
    assert "within 600" not in str(failure.value)


def test_an_unknown_service_is_named_in_the_error(compose_stack):
    with pytest.raises(
        RuntimeFailure, match="'web' is not in .*services are: api, broken, hog, spin"
    ):
        runtime(compose_stack).converge("web", 1, check=False)
    assert not compose_stack["override"].exists()
    assert runtime(compose_stack).instances("web") == []


def test_stop_all_removes_the_project_containers(docker_client, compose_stack):
    rt = runtime(compose_stack)
    rt.converge("api", 2, check=False)

    planned = rt.stop_all(check=True)
    assert len(containers(docker_client, compose_stack)) == 2
    stopped = rt.stop_all(check=False)

    assert planned.actions == stopped.actions
    assert len(stopped.actions) == 2
    assert containers(docker_client, compose_stack) == []
    assert not rt.stop_all(check=False).changed
