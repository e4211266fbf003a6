"""The swarm runtime against a real single-node swarm: what it does is read back from
the engine's API (the service spec, its running tasks and their containers)."""

from __future__ import annotations

import pytest
from ansible.module_utils.nself import scaling
from ansible.module_utils.nself.runtime import RuntimeFailure, get_runtime
from ansible.module_utils.nself.swarm import SwarmRuntime

pytestmark = pytest.mark.docker

MIB = 1024**2
RESOURCES = {
    "limits": {"memory": 64 * MIB, "cpus": 0.5},
    "reservations": {"memory": 32 * MIB, "cpus": 0.25},
}


def runtime(stack) -> SwarmRuntime:
    return get_runtime("swarm", str(stack["state_dir"]), "test", stack["options"])


def spec(stack) -> dict:
    stack["service"].reload()
    return stack["service"].attrs["Spec"]


def running_tasks(stack) -> list[dict]:
    return [
        t
        for t in stack["service"].tasks(filters={"desired-state": "running"})
        if t["Status"]["State"] == "running"
    ]


def test_scale_out_from_1_to_3_and_in_to_1(swarm_stack):
    rt = runtime(swarm_stack)
    rt.converge("api", 1, check=False)
    assert len(running_tasks(swarm_stack)) == 1
    first = rt.instances("api")[0].endpoint
    assert rt.planned_endpoints("api", 3) == [
        first,
        "%s.2:8080" % swarm_stack["name"],
        "%s.3:8080" % swarm_stack["name"],
    ]

    out = rt.grow("api", 3, check=False)

    assert out.changed
    assert spec(swarm_stack)["Mode"]["Replicated"]["Replicas"] == 3
    tasks = running_tasks(swarm_stack)
    assert sorted(t["Slot"] for t in tasks) == [1, 2, 3]
    instances = rt.instances("api")
    assert len(instances) == 3 and all(i.running for i in instances)
    assert [i.endpoint.rsplit(":", 1)[1] for i in instances] == ["8080"] * 3
    assert {i.name.split(".")[-1] for i in instances} == {t["ID"] for t in tasks}
    assert rt.planned_endpoints("api", 3) == [i.endpoint for i in instances]
    # Adding replicas left the first one running: no task was replaced.
    assert instances[0].endpoint == first

    back = rt.shrink("api", 1, check=False)

    assert back.changed
    assert spec(swarm_stack)["Mode"]["Replicated"]["Replicas"] == 1
    assert len(running_tasks(swarm_stack)) == 1
    (left,) = rt.instances("api")
    # The replica left is one that ran before: removing replicas restarts none.
    assert left.name in {i.name for i in instances}


def test_resource_limits_converge_and_read_back(docker_client, swarm_stack):
    rt = runtime(swarm_stack)
    rt.converge("api", 2, check=False)

    change = rt.set_resources("api", RESOURCES, check=False)

    assert change.changed
    resources = spec(swarm_stack)["TaskTemplate"]["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 64 * MIB}
    assert resources["Reservations"] == {
        "NanoCPUs": 250_000_000,
        "MemoryBytes": 32 * MIB,
    }
    tasks = running_tasks(swarm_stack)
    assert len(tasks) == 2
    # The containers the new tasks run carry the limits, as the kernel enforces them.
    for task in tasks:
        container = docker_client.containers.get(
            task["Status"]["ContainerStatus"]["ContainerID"]
        )
        assert container.attrs["HostConfig"]["Memory"] == 64 * MIB
        assert container.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert rt.running_resources("api") == {
        "limits": {"memory": 64 * MIB, "cpus": 0.5},
        "reservations": {"memory": 32 * MIB, "cpus": 0.25},
    }
    usage = rt.usage(rt.instances("api"))
    assert len(usage) == 2
    assert all(0 < u["memory_bytes"] <= 64 * MIB for u in usage.values())


def test_check_mode_reports_the_diff_and_changes_nothing(swarm_stack):
    rt = runtime(swarm_stack)
    rt.converge("api", 1, check=False)
    swarm_stack["service"].reload()
    version = swarm_stack["service"].version
    tasks = {t["ID"] for t in running_tasks(swarm_stack)}

    grow = rt.grow("api", 3, check=True)
    resize = rt.set_resources("api", RESOURCES, check=True)

    assert grow.actions == [
        "scale swarm service %s from 1 to 3 replicas" % swarm_stack["name"]
    ]
    (diff,) = grow.diffs
    assert diff["before_header"] == "swarm service %s" % swarm_stack["name"]
    assert "replicas: 1" in diff["before"] and "replicas: 3" in diff["after"]
    assert resize.changed
    assert "memory: 64M" in resize.diffs[0]["after"]
    swarm_stack["service"].reload()
    assert swarm_stack["service"].version == version
    assert (
        "Resources" not in spec(swarm_stack)["TaskTemplate"]
        or not spec(swarm_stack)["TaskTemplate"]["Resources"]
    )
    assert {t["ID"] for t in running_tasks(swarm_stack)} == tasks


def test_a_second_converge_reports_no_change(swarm_stack):
    rt = runtime(swarm_stack)
    rt.converge("api", 2, check=False)
    rt.set_resources("api", RESOURCES, check=False)
    swarm_stack["service"].reload()
    version = swarm_stack["service"].version

    again = rt.converge("api", 2, check=False)
    resized_again = rt.set_resources("api", RESOURCES, check=False)

    assert not again.changed and not again.diffs
    assert not resized_again.changed
    swarm_stack["service"].reload()
    assert swarm_stack["service"].version == version


def test_scaling_yaml_resources_are_applied_with_the_replicas(swarm_stack):
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
    (swarm_stack["state_dir"] / "scaling.yaml").write_text(scaling.dump(desired))

    runtime(swarm_stack).converge("api", 2, check=False)

    limits = spec(swarm_stack)["TaskTemplate"]["Resources"]["Limits"]
    assert limits == {"NanoCPUs": 250_000_000, "MemoryBytes": 48 * MIB}
    assert len(running_tasks(swarm_stack)) == 2


def test_limits_the_engine_would_refuse_are_refused_first(swarm_stack):
    rt = runtime(swarm_stack)
    rt.converge("api", 1, check=False)
    swarm_stack["service"].reload()
    version = swarm_stack["service"].version

    with pytest.raises(RuntimeFailure, match="below the engine's minimum of 6M"):
        rt.set_resources("api", {"limits": {"memory": MIB}}, check=False)

    swarm_stack["service"].reload()
    assert swarm_stack["service"].version == version


def test_a_missing_service_is_named_in_the_error(swarm_stack):
    rt = runtime(swarm_stack)
    with pytest.raises(
        RuntimeFailure, match="no swarm service %s_web" % swarm_stack["stack"]
    ):
        rt.converge("web", 1, check=False)
    assert rt.instances("web") == []


def test_stop_all_scales_the_stack_to_zero(swarm_stack):
    rt = runtime(swarm_stack)
    rt.converge("api", 2, check=False)

    planned = rt.stop_all(check=True)
    assert len(running_tasks(swarm_stack)) == 2
    stopped = rt.stop_all(check=False)

    assert (
        planned.actions
        == stopped.actions
        == ["scale swarm service %s to 0 replicas" % swarm_stack["name"]]
    )
    assert spec(swarm_stack)["Mode"]["Replicated"]["Replicas"] == 0
    assert running_tasks(swarm_stack) == []
    assert not rt.stop_all(check=False).changed
