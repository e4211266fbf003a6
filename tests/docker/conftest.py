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
COMPOSE_PORTS = (19401, 19440)
SWARM_PORTS = (19501, 19540)
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
"""


@pytest.fixture
def compose_stack(docker_client, tmp_path):
    """A Compose project of one service, `api`, not started yet; removed afterwards."""
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    compose_file = stack_dir / "docker-compose.yml"
    command = server_command(*COMPOSE_PORTS).replace("$", "$$")
    health = "[%s]" % ", ".join(
        '"%s"' % part.replace("$", "$$") for part in HEALTH_TEST
    )
    compose_file.write_text(
        COMPOSE_FILE.format(image=IMAGE, command=command, health=health)
    )
    project = unique("nselftest")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    yield {
        "project": project,
        "compose_file": compose_file,
        "override": stack_dir / "docker-compose.override.yml",
        "state_dir": state_dir,
        "options": {"compose_file": str(compose_file), "project": project},
    }
    label = "com.docker.compose.project=%s" % project
    for container in docker_client.containers.list(
        all=True, filters={"label": label}, ignore_removed=True
    ):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


# -- Swarm ------------------------------------------------------------------------


@pytest.fixture
def swarm_stack(docker_client, tmp_path):
    """A swarm stack with one replicated service, `<stack>_api`, at one replica;
    removed afterwards, with its containers."""
    from docker.types import Healthcheck, ServiceMode, UpdateConfig

    stack = unique("nselfswarm")
    name = "%s_api" % stack
    second = 1_000_000_000
    service = docker_client.services.create(
        IMAGE,
        command=["/bin/sh", "-c", server_command(*SWARM_PORTS)],
        name=name,
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
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    yield {
        "stack": stack,
        "name": name,
        "service": service,
        "state_dir": state_dir,
        "options": {"stack": stack, "ports": {"api": 8080}},
    }
    service.remove()
    # The swarm agent takes seconds to stop and remove the tasks' containers; removing
    # them here makes that immediate.
    label = {"label": "com.docker.swarm.service.name=%s" % name}

    def gone() -> bool:
        left = docker_client.containers.list(
            all=True, filters=label, ignore_removed=True
        )
        for container in left:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        return not left

    wait_for(gone, what="the containers of %s to go" % name)
