"""The interface every runtime implements, and the stored definition of a service.

A role describes a service once (what to run, on which ports, how to tell it is
healthy) with a `ServiceDefinition`; a runtime then converges it to a number of replicas
and reports the instances that actually run. Roles and scaling modules only ever talk
to `Runtime`, so the process, Compose and Swarm runtimes can be swapped per environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

RUNTIMES = ("process", "compose", "swarm")

# The options of every module that acts on an environment (documented once, in the
# nself_environment documentation fragment).
ENVIRONMENT_SPEC = dict(
    state_dir=dict(type="path", required=True),
    env=dict(type="str", required=True),
    runtime=dict(type="str", choices=list(RUNTIMES), default="process"),
    runtime_options=dict(type="dict", default={}),
)


class RuntimeFailure(Exception):
    """A runtime could not do what it was asked; the message says what and why."""


@dataclass
class ServiceDefinition:
    """What a service is, independent of how many copies of it run."""

    name: str
    command: list[str]
    # A replicable service runs as name_1, name_2, … on port_base + index; a singleton
    # runs as `name` on `port`.
    replicable: bool = False
    port: int | None = None
    port_base: int | None = None
    bind_address: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    directory: str | None = None
    stopsignal: str = "TERM"
    stopwaitsecs: int = 30
    health: dict = field(default_factory=lambda: {"type": "tcp"})

    def instance_names(self, replicas: int) -> list[str]:
        if not self.replicable:
            return [self.name]
        return ["%s_%d" % (self.name, index) for index in range(1, replicas + 1)]

    def port_of(self, instance: str) -> int | None:
        if not self.replicable:
            return self.port
        index = int(instance.rsplit("_", 1)[1])
        return (self.port_base or 0) + index

    def endpoint_of(self, instance: str) -> str:
        return "%s:%s" % (self.bind_address, self.port_of(instance))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> ServiceDefinition:
        return cls(**data)


@dataclass
class Instance:
    """One running (or supposed to be running) copy of a service."""

    name: str
    service: str
    endpoint: str
    state: str
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "running")


@dataclass
class Change:
    """What a runtime did, or in check mode would do."""

    changed: bool = False
    actions: list[str] = field(default_factory=list)
    diffs: list[dict] = field(default_factory=list)

    def add(self, action: str) -> None:
        self.changed = True
        self.actions.append(action)

    def add_diff(self, path: str, before: str, after: str) -> None:
        self.diffs.append(
            {
                "before_header": path,
                "after_header": path,
                "before": before,
                "after": after,
            }
        )

    def merge(self, other: Change) -> None:
        self.changed = self.changed or other.changed
        self.actions.extend(other.actions)
        self.diffs.extend(other.diffs)


def definitions_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "services")


def definition_path(state_dir: str, service: str) -> str:
    return os.path.join(definitions_dir(state_dir), service + ".json")


def load_definition(state_dir: str, service: str) -> ServiceDefinition | None:
    try:
        with open(definition_path(state_dir, service)) as handle:
            return ServiceDefinition.from_dict(json.load(handle))
    except FileNotFoundError:
        return None


def defined_services(state_dir: str) -> list[str]:
    try:
        names = os.listdir(definitions_dir(state_dir))
    except FileNotFoundError:
        return []
    return sorted(name[:-5] for name in names if name.endswith(".json"))


def read_text(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def write_text(path: str, text: str, mode: int = 0o644) -> None:
    """Write a file atomically so a reader never sees half of it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class Runtime:
    """How services are run in one environment."""

    name = ""

    def __init__(self, state_dir: str, env: str, options: dict | None = None) -> None:
        self.state_dir = state_dir
        self.env = env
        self.options = options or {}

    def define(self, definition: ServiceDefinition, check: bool) -> Change:
        """Store a service's definition so later commands can scale it."""
        path = definition_path(self.state_dir, definition.name)
        before, after = read_text(path), definition.to_json()
        change = Change()
        if before != after:
            change.add("define service %s" % definition.name)
            change.add_diff(path, before, after)
            if not check:
                write_text(path, after)
        return change

    def converge(
        self,
        service: str,
        replicas: int,
        check: bool,
        wait_timeout: float = 60.0,
        definition: ServiceDefinition | None = None,
    ) -> Change:
        """Make exactly `replicas` copies of a service run and be healthy.

        `definition` overrides the stored one (check mode passes the one it would
        store).
        """
        raise NotImplementedError

    def grow(
        self,
        service: str,
        replicas: int,
        check: bool,
        wait_timeout: float = 60.0,
        definition: ServiceDefinition | None = None,
    ) -> Change:
        """Start replicas up to `replicas`, stopping none (scale-out's first step)."""
        raise NotImplementedError

    def shrink(
        self,
        service: str,
        replicas: int,
        check: bool,
        definition: ServiceDefinition | None = None,
    ) -> Change:
        """Stop the replicas beyond `replicas` (scale-in's last step, after a drain)."""
        raise NotImplementedError

    def planned_endpoints(
        self,
        service: str,
        replicas: int,
        definition: ServiceDefinition | None = None,
    ) -> list[str]:
        """The endpoints a load balancer lists once `replicas` instances run."""
        definition = definition or load_definition(self.state_dir, service)
        if definition is None:
            raise RuntimeFailure("service %r is not defined" % service)
        return [definition.endpoint_of(i) for i in definition.instance_names(replicas)]

    def instances(self, service: str) -> list[Instance]:
        """Every instance of a service the runtime knows, running or not, in order."""
        raise NotImplementedError

    def set_resources(
        self, service: str, resources: dict, check: bool, wait_timeout: float = 60.0
    ) -> Change:
        """Apply limits and reservations to every instance of a service.

        `resources` is shaped like Compose's deploy.resources with sizes already parsed:
        {"limits": {"memory": bytes, "cpus": float}, "reservations": {...}}; a missing
        key means no limit. Returns what changed; check mode changes nothing.
        """
        raise NotImplementedError

    def usage(self, instances: list[Instance]) -> dict[str, dict]:
        """CPU % (of one core) and memory in bytes now, per instance name:
        {"api_1": {"cpu_percent": 12.5, "memory_bytes": 73400320}}."""
        raise NotImplementedError

    def enforcement(self) -> str | None:
        """Why resource limits cannot be enforced here, or None when they can."""
        return None

    def limits_in_force(self, instances: list[Instance]) -> dict[str, dict]:
        """The limits each running instance really has, read back from where they
        are enforced: {"api_1": {"memory": bytes, "cpus": float}}; {} for none."""
        raise NotImplementedError

    def stop_all(self, check: bool) -> Change:
        raise NotImplementedError


def get_runtime(name: str, state_dir: str, env: str, options: dict | None = None):
    """The runtime an inventory names, or an error naming the valid ones."""
    if name == "process":
        from ansible.module_utils.nself.process import ProcessRuntime

        return ProcessRuntime(state_dir, env, options)
    if name == "compose":
        from ansible.module_utils.nself.compose import ComposeRuntime

        return ComposeRuntime(state_dir, env, options)
    if name == "swarm":
        from ansible.module_utils.nself.swarm import SwarmRuntime

        return SwarmRuntime(state_dir, env, options)
    raise RuntimeFailure(
        "unknown runtime %r; valid runtimes: %s" % (name, ", ".join(RUNTIMES))
    )
