"""The scale tasks, run as an operator runs them (`invoke scale-out ...`), against a
Compose and a Swarm environment of the test inventories; what runs afterwards is read
from the engine's API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.docker

PROJECT_DIR = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")


def invoke(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [INVOKE, *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def compose_running(client, project: str) -> list:
    label = "com.docker.compose.project=%s" % project
    return sorted(
        (
            c
            for c in client.containers.list(filters={"label": label})
            if c.status == "running"
        ),
        key=lambda c: c.name,
    )


def desired_replicas(state_dir: Path) -> int:
    data = yaml.safe_load((state_dir / "scaling.yaml").read_text())
    return data["services"]["api"]["deploy"]["replicas"]


def test_compose_scale_out_to_3_status_and_in(docker_client, tasks_compose_env):
    env, state_dir = tasks_compose_env["env"], tasks_compose_env["state_dir"]
    project = tasks_compose_env["project"]

    ok(
        invoke(
            env, "scale-out", "--env", "compose", "--service", "api", "--replicas", "3"
        )
    )

    running = compose_running(docker_client, project)
    assert [c.name for c in running] == ["%s_api_%d" % (project, n) for n in (1, 2, 3)]
    for container in running:
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
    assert desired_replicas(state_dir) == 3
    override = yaml.safe_load(
        (state_dir / "stack" / "docker-compose.override.yml").read_text()
    )
    assert override["services"]["api"]["deploy"]["replicas"] == 3

    status = json.loads(
        ok(invoke(env, "scale-status", "--env", "compose", "--format", "json")).stdout
    )
    (api,) = [s for s in status["services"] if s["name"] == "api"]
    assert (api["replicas"], api["running"]) == (3, 3)
    assert [i["endpoint"] for i in api["instances"]] == [
        "%s:8080" % c.name for c in running
    ]

    # A dry run plans and changes nothing; then the real scale-in.
    ids = [c.id for c in running]
    ok(invoke(env, "scale-in", "--env", "compose", "--service", "api", "--dry-run"))
    assert [c.id for c in compose_running(docker_client, project)] == ids
    assert desired_replicas(state_dir) == 3
    ok(
        invoke(
            env, "scale-in", "--env", "compose", "--service", "api", "--replicas", "1"
        )
    )
    assert [c.id for c in compose_running(docker_client, project)] == ids[:1]
    assert desired_replicas(state_dir) == 1


def test_swarm_scale_out_to_3_status_and_in(tasks_swarm_env):
    env, state_dir = tasks_swarm_env["env"], tasks_swarm_env["state_dir"]
    service, stack = tasks_swarm_env["service"], tasks_swarm_env["stack"]

    def running_tasks() -> list[dict]:
        return [
            t
            for t in service.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"
        ]

    ok(
        invoke(
            env, "scale-out", "--env", "swarm", "--service", "api", "--replicas", "3"
        )
    )

    service.reload()
    assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
    assert sorted(t["Slot"] for t in running_tasks()) == [1, 2, 3]
    assert desired_replicas(state_dir) == 3

    status = json.loads(
        ok(invoke(env, "scale-status", "--env", "swarm", "--format", "json")).stdout
    )
    (api,) = [s for s in status["services"] if s["name"] == "api"]
    assert (api["replicas"], api["running"]) == (3, 3)
    assert {i["name"].rsplit(".", 1)[1] for i in api["instances"]} == {
        t["ID"] for t in running_tasks()
    }
    assert all(i["name"].startswith(stack + "_api.") for i in api["instances"])

    ok(invoke(env, "scale-in", "--env", "swarm", "--service", "api", "--replicas", "1"))
    service.reload()
    assert service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    assert len(running_tasks()) == 1
    assert desired_replicas(state_dir) == 1


def _scale_up_then_status(env: dict, env_name: str) -> dict:
    ok(
        invoke(
            env,
            "scale-up",
            "--env",
            env_name,
            "--service",
            "api",
            "--memory",
            "64M",
            "--cpu",
            "0.5",
        )
    )
    status = json.loads(
        ok(invoke(env, "scale-status", "--env", env_name, "--format", "json")).stdout
    )
    (api,) = [s for s in status["services"] if s["name"] == "api"]
    assert api["resources"]["memory"] == "64M"
    assert api["resources"]["cpus"] == "0.5"
    # Read back from the engine, not from scaling.yaml.
    assert api["limits_in_force"] is True
    running = [i for i in api["instances"] if i["limits"] is not None]
    assert len(running) == api["running"] > 0
    for instance in running:
        assert instance["limits"] == {"memory": "64M", "cpus": "0.5"}
    return dict(api, instances=running)


def test_compose_limits_show_as_in_force(docker_client, tasks_compose_env):
    api = _scale_up_then_status(tasks_compose_env["env"], "compose")
    for instance in api["instances"]:
        host = docker_client.containers.get(instance["name"]).attrs["HostConfig"]
        assert host["Memory"] == 64 * 1024**2
        assert host["NanoCpus"] == 500_000_000


def test_swarm_limits_show_as_in_force(docker_client, tasks_swarm_env):
    api = _scale_up_then_status(tasks_swarm_env["env"], "swarm")
    for instance in api["instances"]:
        host = docker_client.containers.get(instance["name"]).attrs["HostConfig"]
        assert host["Memory"] == 64 * 1024**2
