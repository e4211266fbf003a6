"""The `swarm` runtime: services of a Docker Swarm stack, scaled through the engine API.

The stack is deployed by the operator (`docker stack deploy`); this runtime changes a
service's replica count and resources in its spec, then waits until the swarm runs
exactly that: the running tasks are counted and their specs compared, never assumed.
Check mode reads the spec and says what it would change.

Options (from the inventory's `nself_runtime_options`):
  stack        the stack's namespace (default nself_<env>); service api of the stack
               is the swarm service <stack>_api
  services     {service: swarm service name} where the names differ from that
  ports        {service: port} the port a service listens on inside its containers
  docker_host  the engine to talk to (default DOCKER_HOST or the local socket)
"""

from __future__ import annotations

import copy
import time

import yaml
from ansible.module_utils.nself.docker_engine import (
    DeployRuntime,
    check_resources,
    connect,
    containers_usage,
    desired_deploy,
    engine_enforcement,
)
from ansible.module_utils.nself.runtime import (
    Change,
    Instance,
    RuntimeFailure,
    ServiceDefinition,
    load_definition,
)
from ansible.module_utils.nself.scaling import (
    compose_resources,
    describe_resources,
    nano_cpus,
    parse_resources,
)

STACK_LABEL = "com.docker.stack.namespace"
# Task states on the way to running; a task in any other state is done with.
STARTING_STATES = (
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
)
FAILED_STATES = ("failed", "rejected")


def spec_resources(resources: dict | None) -> dict:
    """Parsed resources from a task template's Resources (NanoCPUs, MemoryBytes)."""
    parsed: dict = {}
    for kind, key in (("limits", "Limits"), ("reservations", "Reservations")):
        section = (resources or {}).get(key) or {}
        values = {}
        if section.get("MemoryBytes"):
            values["memory"] = section["MemoryBytes"]
        if section.get("NanoCPUs"):
            values["cpus"] = section["NanoCPUs"] / 1e9
        if values:
            parsed[kind] = values
    return parsed


def engine_resources(resources: dict):
    """docker.types.Resources from parsed resources."""
    from docker.types import Resources

    limits = resources.get("limits") or {}
    reservations = resources.get("reservations") or {}
    return Resources(
        cpu_limit=nano_cpus(limits.get("cpus")),
        mem_limit=limits.get("memory"),
        cpu_reservation=nano_cpus(reservations.get("cpus")),
        mem_reservation=reservations.get("memory"),
    )


def same_resources(a: dict, b: dict) -> bool:
    """Whether two parsed resources ask for the same, counted as the engine counts."""

    def key(resources: dict) -> dict:
        resources = parse_resources(resources)
        return {
            kind: {
                "memory": values.get("memory"),
                "cpus": nano_cpus(values.get("cpus")),
            }
            for kind, values in resources.items()
        }

    return key(a) == key(b)


def _deploy_text(deploy: dict) -> str:
    """A service's deploy state as YAML, for the diff check mode shows."""
    shown: dict = {"replicas": deploy.get("replicas")}
    resources = compose_resources(deploy.get("resources"))
    if resources:
        shown["resources"] = resources
    return yaml.safe_dump({"deploy": shown}, default_flow_style=False, sort_keys=False)


class SwarmRuntime(DeployRuntime):
    """Services as Swarm services; replicas as the swarm's tasks."""

    name = "swarm"

    def __init__(self, state_dir: str, env: str, options: dict | None = None) -> None:
        super().__init__(state_dir, env, options)
        self.stack = self.options.get("stack") or "nself_%s" % env
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.options)
        return self._client

    # -- the engine's view ---------------------------------------------------------

    def service_name(self, service: str) -> str:
        names = self.options.get("services") or {}
        return names.get(service) or "%s_%s" % (self.stack, service)

    def _service(self, service: str):
        import docker

        name = self.service_name(service)
        try:
            found = self.client.services.get(name)
        except docker.errors.NotFound as exc:
            raise RuntimeFailure(
                "service %r of %s is not running in the swarm: there is no swarm "
                "service %s (deploy the stack with `docker stack deploy` first)"
                % (service, self.env, name)
            ) from exc
        except docker.errors.APIError as exc:
            raise RuntimeFailure(
                "read swarm service %s: %s" % (name, exc.explanation or exc)
            ) from exc
        found.reload()
        return found

    @staticmethod
    def _current(swarm_service) -> dict:
        spec = swarm_service.attrs["Spec"]
        mode = spec.get("Mode") or {}
        if "Replicated" not in mode:
            raise RuntimeFailure(
                "swarm service %s runs in %s mode; only replicated services have a "
                "replica count" % (spec["Name"], ", ".join(mode) or "an unknown")
            )
        return {
            "replicas": int(mode["Replicated"].get("Replicas", 1)),
            "resources": spec_resources(spec["TaskTemplate"].get("Resources")),
        }

    def _tasks(self, swarm_service) -> list[dict]:
        try:
            return swarm_service.tasks()
        except Exception as exc:
            raise RuntimeFailure(
                "list the tasks of swarm service %s: %s" % (swarm_service.name, exc)
            ) from exc

    @staticmethod
    def _container_name(service_name: str, task: dict) -> str:
        # The name the engine gives a task's container, and the one its DNS answers.
        return "%s.%s.%s" % (
            service_name,
            task.get("Slot") or task["NodeID"],
            task["ID"],
        )

    def _port(self, service: str, swarm_service) -> int | str | None:
        ports = self.options.get("ports") or {}
        if ports.get(service):
            return ports[service]
        definition = load_definition(self.state_dir, service)
        if definition is not None and definition.port:
            return definition.port
        endpoint = swarm_service.attrs["Spec"].get("EndpointSpec") or {}
        for port in endpoint.get("Ports") or []:
            if port.get("TargetPort"):
                return port["TargetPort"]
        return None

    # -- converging ----------------------------------------------------------------

    def _apply(
        self,
        service: str,
        check: bool,
        wait_timeout: float,
        definition: ServiceDefinition | None,
        *,
        replicas: int | None = None,
        resources: dict | None = None,
        mode: str = "exact",
    ) -> Change:
        """Put the desired replicas and resources in the service's spec and wait for
        the swarm to run them. `mode` is "grow" (never fewer replicas than now),
        "shrink" (never more, resources untouched) or "exact"."""
        definition = definition or load_definition(self.state_dir, service)
        if (
            replicas is not None
            and definition is not None
            and not definition.replicable
            and replicas != 1
        ):
            raise RuntimeFailure(
                "service %r runs as a single instance; it cannot have %d replicas"
                % (service, replicas)
            )
        swarm_service = self._service(service)
        current = self._current(swarm_service)
        deploy = desired_deploy(
            self.state_dir, service, current, replicas=replicas, resources=resources
        )
        target = dict(current)
        if mode == "grow":
            target["replicas"] = max(deploy["replicas"], current["replicas"])
        elif mode == "shrink":
            target["replicas"] = min(deploy["replicas"], current["replicas"])
        else:
            target["replicas"] = deploy["replicas"]
        if mode != "shrink":
            target["resources"] = deploy["resources"]

        name = swarm_service.name
        if mode != "shrink" and target["resources"]:
            check_resources(target["resources"], self.client, "swarm service " + name)
        change = Change()
        if target["replicas"] != current["replicas"]:
            change.add(
                "scale swarm service %s from %d to %d replicas"
                % (name, current["replicas"], target["replicas"])
            )
        resources_change = not same_resources(target["resources"], current["resources"])
        if resources_change:
            change.add(
                "replace the tasks of swarm service %s with %s (rolling update)"
                % (name, describe_resources(target["resources"]))
            )
        if change.changed:
            change.add_diff(
                "swarm service %s" % name, _deploy_text(current), _deploy_text(target)
            )
        if check:
            return change
        if change.changed:
            self._update(swarm_service, target, resources_change)
        self._wait(swarm_service, target, wait_timeout)
        return change

    def _update(self, swarm_service, target: dict, resources_change: bool) -> None:
        import docker
        from docker.types import ServiceMode

        name = swarm_service.name
        for attempt in range(3):
            # The spec goes back as it was read, changed only where asked: a spec
            # filled in with the engine's defaults would differ from the running one
            # and make the swarm replace every task, even for a change of count.
            spec = copy.deepcopy(swarm_service.attrs["Spec"])
            task_template = spec["TaskTemplate"]
            if resources_change:
                task_template["Resources"] = engine_resources(target["resources"])
            try:
                self.client.api.update_service(
                    swarm_service.id,
                    swarm_service.version,
                    task_template=task_template,
                    name=spec["Name"],
                    labels=spec.get("Labels") or {},
                    mode=ServiceMode("replicated", replicas=target["replicas"]),
                    update_config=spec.get("UpdateConfig"),
                    rollback_config=spec.get("RollbackConfig"),
                    endpoint_spec=spec.get("EndpointSpec"),
                )
                return
            except docker.errors.APIError as exc:
                # Another writer updated the spec in between: read it again, retry.
                if "update out of sequence" in str(exc) and attempt < 2:
                    swarm_service.reload()
                    continue
                raise RuntimeFailure(
                    "update swarm service %s: %s" % (name, exc.explanation or exc)
                ) from exc

    def _wait(self, swarm_service, target: dict, timeout: float) -> None:
        """Poll the engine until exactly the target count of tasks runs, each with the
        target resources, and none of the tasks being replaced runs any more."""
        name = swarm_service.name
        deadline = time.monotonic() + timeout
        while True:
            tasks = self._tasks(swarm_service)
            wanted = [t for t in tasks if t.get("DesiredState") == "running"]
            running = [t for t in wanted if t["Status"]["State"] == "running"]
            leaving = [
                t
                for t in tasks
                if t.get("DesiredState") != "running"
                and t["Status"]["State"] in ("running", *STARTING_STATES)
            ]
            stale = [
                t
                for t in running
                if not same_resources(
                    spec_resources((t.get("Spec") or {}).get("Resources")),
                    target["resources"],
                )
            ]
            if (
                len(running) == target["replicas"] == len(wanted)
                and not leaving
                and not stale
            ):
                return
            if time.monotonic() > deadline:
                errors = sorted(
                    {
                        t["Status"].get("Err") or t["Status"].get("Message", "")
                        for t in tasks
                        if t["Status"]["State"] in FAILED_STATES
                    }
                )
                raise RuntimeFailure(
                    "swarm service %s did not converge within %ss: %d of %d tasks "
                    "running, %d with old resources, %d still stopping%s"
                    % (
                        name,
                        timeout,
                        len(running),
                        target["replicas"],
                        len(stale),
                        len(leaving),
                        "; task errors: %s" % "; ".join(e for e in errors if e)
                        if any(errors)
                        else "",
                    )
                )
            time.sleep(0.5)

    # -- reading -------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        import docker

        try:
            swarm_service = self._service(service)
        except RuntimeFailure:
            return []
        port = self._port(service, swarm_service)
        name = swarm_service.name
        tasks = [
            t for t in self._tasks(swarm_service) if t.get("DesiredState") == "running"
        ]
        result = []
        for task in sorted(tasks, key=lambda t: (t.get("Slot") or 0, t["ID"])):
            container = self._container_name(name, task)
            pid = ((task["Status"].get("ContainerStatus") or {}).get("PID")) or None
            if pid is None and task["Status"]["State"] == "running":
                try:
                    state = self.client.containers.get(container).attrs["State"]
                    pid = state.get("Pid") or None
                except docker.errors.NotFound:
                    # The task runs on another node of the swarm.
                    pid = None
            result.append(
                Instance(
                    name=container,
                    service=service,
                    endpoint="%s:%s" % (container, port) if port else container,
                    state=task["Status"]["State"],
                    pid=pid,
                )
            )
        return result

    def planned_endpoints(self, service, replicas, definition=None) -> list[str]:
        """The endpoints of the first `replicas` tasks by slot; one the swarm has yet
        to start (check mode) is named by a free slot, as its task has no name yet."""
        swarm_service = self._service(service)
        port = self._port(service, swarm_service)
        names = [i.name for i in self.instances(service)][:replicas]
        used = {int(name.split(".")[-2]) for name in names}
        slot = 0
        while len(names) < replicas:
            slot += 1
            if slot not in used:
                names.append("%s.%d" % (swarm_service.name, slot))
        return ["%s:%s" % (name, port) if port else name for name in names]

    def running_resources(self, service: str) -> dict:
        """The resources in the service's spec, parsed."""
        return self._current(self._service(service))["resources"]

    def usage(self, instances: list[Instance]) -> dict[str, dict]:
        return containers_usage(self.client, [i.name for i in instances if i.running])

    def enforcement(self) -> str | None:
        return engine_enforcement(self.client)

    def stop_all(self, check: bool) -> Change:
        """Scale every service of the stack to 0; their specs stay for the next up."""
        try:
            services = self.client.services.list(
                filters={"label": "%s=%s" % (STACK_LABEL, self.stack)}
            )
        except Exception as exc:
            raise RuntimeFailure(
                "list the services of swarm stack %s: %s" % (self.stack, exc)
            ) from exc
        change = Change()
        for swarm_service in sorted(services, key=lambda s: s.name):
            swarm_service.reload()
            current = self._current(swarm_service)
            if current["replicas"] == 0:
                continue
            change.add("scale swarm service %s to 0 replicas" % swarm_service.name)
            if not check:
                target = dict(current, replicas=0)
                self._update(swarm_service, target, False)
                self._wait(swarm_service, target, 120.0)
        return change
