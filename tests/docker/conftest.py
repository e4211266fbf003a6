"""A real Docker Engine for the compose and swarm runtime tests, and their stacks.

The engine is made ready by scripts/docker-engine.sh (which `make test` runs too; it
is idempotent, so running it again here is cheap). Where no engine can be had, every
test here is skipped with the script's own reason.

Test containers use host networking and listen on 127.0.0.1 only. A replica cannot
know its index, so each one takes the first free port of a small range; its health
check asks the port it took, so the engine's health status says it answers HTTP.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from pathlib import Path

import ansible.module_utils
import docker
import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
MODULE_UTILS = str(PROJECT_DIR / "module_utils")
if MODULE_UTILS not in list(ansible.module_utils.__path__):
    ansible.module_utils.__path__.append(MODULE_UTILS)

IMAGE = os.environ.get("NSELF_TEST_IMAGE", "nself/busybox:test")
# Port ranges on 127.0.0.1: the runtime tests' and the scale tasks' stacks apart.
COMPOSE_PORTS = (19401, 19420)
SWARM_PORTS = (19501, 19520)
TASKS_COMPOSE_PORTS = (19421, 19440)
TASKS_SWARM_PORTS = (19521, 19540)
# The names the test inventories (tests/docker/inventories) give their stacks.
TASKS_COMPOSE_PROJECT = "nselftaskscompose"
TASKS_SWARM_STACK = "nselftasksswarm"
INVENTORIES = Path(__file__).resolve().parent / "inventories"
MIB = 1024**2


def server_command(first: int, last: int) -> str:
    """A shell loop serving /www on the first free port of [first, last)."""
    return (
        "p=%d; while [ $p -lt %d ]; do echo $p > /tmp/port; "
        "httpd -f -p 127.0.0.1:$p -h /www; p=$((p+1)); done; exit 1" % (first, last)
    )


HEALTH_TEST = [
    "CMD",
    "/bin/sh",
    "-c",
    "wget -q -O /dev/null http://127.0.0.1:$(cat /tmp/port)/",
]


def wait_for(predicate, timeout: float = 60.0, what: str = "the engine"):
    """Poll until predicate() returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("%s within %ss" % (what, timeout))
        time.sleep(0.2)


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker Engine ready for the tests (swarm manager, test image built)."""
    script = PROJECT_DIR / "scripts" / "docker-engine.sh"
    try:
        proc = subprocess.run(
            ["bash", str(script)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/docker-engine.sh did not finish within 900s")
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        pytest.skip(
            "no Docker Engine: %s"
            % (reason[-1] if reason else "docker-engine.sh failed")
        )
    return proc.stdout


@pytest.fixture(scope="session")
def docker_client(docker_engine):
    client = docker.from_env(version="auto")
    yield client
    client.close()


def unique(prefix: str) -> str:
    return "%s%s" % (prefix, uuid.uuid4().hex[:8])


# -- Compose ----------------------------------------------------------------------

COMPOSE_FILE = """\
version: "3.8"
services:
  api:
    image: {image}
    network_mode: host
    init: true
    stop_grace_period: 5s
    command: ["/bin/sh", "-c", "{command}"]
    expose: ["8080"]
    healthcheck:
      test: {health}
      interval: 1s
      timeout: 2s
      retries: 30
  # A service whose container exits at once, for the runtime's failure reports.
  broken:
    image: {image}
    network_mode: host
    command: ["/bin/sh", "-c", "echo cannot start; exit 3"]
  # One that keeps a CPU busy, to see a CPU limit hold.
  spin:
    image: {image}
    network_mode: host
    init: true
    command: ["/bin/sh", "-c", "while :; do :; done"]
  # One whose memory grows without end, to see a memory limit hold.
  hog:
    image: {image}
    network_mode: host
    init: true
    command: ["/bin/sh", "-c", "awk 'BEGIN {{ s = \\"x\\"; while (1) s = s s }}'"]
"""


def write_compose_file(path: Path, ports: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Compose reads $ as its own variables; $$ passes one to the shell.
    command = server_command(*ports).replace("$", "$$")
    health = "[%s]" % ", ".join(
        '"%s"' % part.replace("$", "$$") for part in HEALTH_TEST
    )
    path.write_text(COMPOSE_FILE.format(image=IMAGE, command=command, health=health))
    return path


def remove_compose_project(client, project: str) -> None:
    label = "com.docker.compose.project=%s" % project
    for container in client.containers.list(
        all=True, filters={"label": label}, ignore_removed=True
    ):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


@pytest.fixture
def compose_stack(docker_client, tmp_path):
    """A Compose project with the service `api`, not started yet; removed afterwards."""
    compose_file = write_compose_file(
        tmp_path / "stack" / "docker-compose.yml", COMPOSE_PORTS
    )
    project = unique("nselftest")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    yield {
        "project": project,
        "compose_file": compose_file,
        "override": compose_file.parent / "docker-compose.override.yml",
        "state_dir": state_dir,
        "options": {"compose_file": str(compose_file), "project": project},
    }
    remove_compose_project(docker_client, project)


# -- Swarm ------------------------------------------------------------------------


def create_swarm_service(client, stack: str, ports: tuple[int, int]):
    """The service `<stack>_api` at one replica, labelled as `docker stack deploy`
    labels a stack's services."""
    from docker.types import Healthcheck, ServiceMode, UpdateConfig

    second = 1_000_000_000
    return client.services.create(
        IMAGE,
        command=["/bin/sh", "-c", server_command(*ports)],
        name="%s_api" % stack,
        networks=["host"],
        init=True,
        labels={"com.docker.stack.namespace": stack},
        mode=ServiceMode("replicated", replicas=1),
        healthcheck=Healthcheck(
            test=HEALTH_TEST, interval=second, timeout=2 * second, retries=30
        ),
        stop_grace_period=5 * second,
        # Replace every task at once and watch each for a moment only, so a
        # resource change takes seconds rather than one monitor period per task.
        update_config=UpdateConfig(parallelism=0, monitor=second // 2),
    )


def remove_swarm_service(client, name: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.services.get(name).remove()
    # The swarm agent takes seconds to stop and remove the tasks' containers; removing
    # them here makes that immediate.
    label = {"label": "com.docker.swarm.service.name=%s" % name}

    def gone() -> bool:
        left = client.containers.list(all=True, filters=label, ignore_removed=True)
        for container in left:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        return not left

    wait_for(gone, what="the containers of %s to go" % name)


@pytest.fixture
def swarm_stack(docker_client, tmp_path):
    """A swarm stack with one replicated service, `<stack>_api`, at one replica;
    removed afterwards, with its containers."""
    stack = unique("nselfswarm")
    service = create_swarm_service(docker_client, stack, SWARM_PORTS)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    yield {
        "stack": stack,
        "name": service.name,
        "service": service,
        "state_dir": state_dir,
        "options": {"stack": stack, "ports": {"api": 8080}},
    }
    remove_swarm_service(docker_client, service.name)


# -- the scale tasks --------------------------------------------------------------


@pytest.fixture
def task_env(tmp_path) -> dict:
    """The environment `invoke` runs in: the test inventories, a state root of its
    own."""
    state_root = tmp_path / "state-root"
    state_root.mkdir()
    return dict(
        os.environ,
        NSELF_INVENTORIES=str(INVENTORIES),
        NSELF_STATE_ROOT=str(state_root),
    )


@pytest.fixture
def tasks_compose_env(docker_client, task_env):
    """The inventory's `compose` environment with its stack's compose file in place."""
    remove_compose_project(docker_client, TASKS_COMPOSE_PROJECT)
    state_dir = Path(task_env["NSELF_STATE_ROOT"]) / "compose"
    write_compose_file(state_dir / "stack" / "docker-compose.yml", TASKS_COMPOSE_PORTS)
    yield {"env": task_env, "state_dir": state_dir, "project": TASKS_COMPOSE_PROJECT}
    remove_compose_project(docker_client, TASKS_COMPOSE_PROJECT)


@pytest.fixture
def tasks_swarm_env(docker_client, task_env):
    """The inventory's `swarm` environment with its stack's service at one replica."""
    name = "%s_api" % TASKS_SWARM_STACK
    remove_swarm_service(docker_client, name)
    service = create_swarm_service(docker_client, TASKS_SWARM_STACK, TASKS_SWARM_PORTS)
    state_dir = Path(task_env["NSELF_STATE_ROOT"]) / "swarm"
    yield {
        "env": task_env,
        "state_dir": state_dir,
        "service": service,
        "stack": TASKS_SWARM_STACK,
    }
    remove_swarm_service(docker_client, name)
