"""The `compose` runtime: services of a Compose project, scaled with an override file.

The stack's own compose file stays the operator's. What nself-ops decides about a
service (its replicas and resources) is written to `docker-compose.override.yml` beside
it, in the `deploy:` shape scaling.yaml uses, and applied with the Compose CLI; what
runs is always read back from the engine by the labels Compose puts on containers.

Options (from the inventory's `nself_runtime_options`):
  compose_file     the stack's compose file (relative paths are under the state folder)
  project          the Compose project name (default nself_<env>)
  compose_command  the Compose CLI as a list (default: `docker compose`, else
                   `docker-compose`)
  ports            {service: port} the port a service listens on inside its containers
  docker_host      the engine to talk to (default DOCKER_HOST or the local socket)
"""

from __future__ import annotations

import calendar
import copy
import os
import re
import shlex
import shutil
import subprocess
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
    read_text,
    write_text,
)
from ansible.module_utils.nself.scaling import (
    compose_resources,
    describe_resources,
    nano_cpus,
    parse_resources,
)

OVERRIDE_NAME = "docker-compose.override.yml"
OVERRIDE_HEADER = (
    "# Written by nself-ops from the environment's scaling.yaml: each service's\n"
    "# deploy.replicas and deploy.resources are replaced when it is scaled; other\n"
    "# keys are kept as they are.\n"
)
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CLI_TIMEOUT = 600


def project_name(name: str) -> str:
    """A project name the way Compose keeps it (lower case, letters, digits, - and _),
    so the labels looked up are the labels Compose writes."""
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


def _number(container) -> int:
    try:
        return int(container.labels.get(NUMBER_LABEL, 0))
    except ValueError:
        return 0


# How long a container without a health check must have run to count as started.
MIN_UPTIME_S = 1.0


def _uptime(state: dict) -> float:
    """Seconds since the engine started a container, from its State.StartedAt."""
    started = state.get("StartedAt") or ""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", started)
    if not match:
        return 0.0
    seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    seconds += float(match.group(2) or 0)
    return time.time() - seconds


class ComposeRuntime(DeployRuntime):
    """Services as containers of one Compose project; replicas as Compose's scale."""

    name = "compose"

    def __init__(self, state_dir: str, env: str, options: dict | None = None) -> None:
        super().__init__(state_dir, env, options)
        compose_file = self.options.get("compose_file")
        if not compose_file:
            raise RuntimeFailure(
                "the compose runtime of %s needs the option compose_file (the "
                "stack's docker-compose.yml) in nself_runtime_options" % env
            )
        if not os.path.isabs(compose_file):
            compose_file = os.path.join(state_dir, compose_file)
        self.compose_file = compose_file
        self.override_path = os.path.join(os.path.dirname(compose_file), OVERRIDE_NAME)
        self.project = project_name(self.options.get("project") or "nself_%s" % env)
        self._client = None
        self._cli: list[str] | None = None
        self._cli_major = 0

    # -- the engine and the CLI ----------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            self._client = connect(self.options)
        return self._client

    def cli(self) -> list[str]:
        """The Compose CLI found here, as argv; v1 gets --compatibility so that it
        honours deploy.replicas and deploy.resources, which it otherwise ignores."""
        if self._cli is not None:
            return self._cli
        configured = self.options.get("compose_command")
        if isinstance(configured, str):
            configured = shlex.split(configured)
        candidates = [list(configured)] if configured else []
        if not candidates:
            if shutil.which("docker"):
                candidates.append(["docker", "compose"])
            if shutil.which("docker-compose"):
                candidates.append(["docker-compose"])
        for argv in candidates:
            try:
                result = subprocess.run(
                    [*argv, "version", "--short"],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
            except (OSError, subprocess.TimeoutExpired):
                continue
            major = re.match(r"v?(\d+)\.", result.stdout.strip())
            if result.returncode == 0 and major:
                self._cli_major = int(major.group(1))
                self._cli = argv + (["--compatibility"] if self._cli_major == 1 else [])
                return self._cli
        raise RuntimeFailure(
            "find the Compose CLI for project %s: neither `docker compose` nor "
            "`docker-compose` runs on this host" % self.project
        )

    def _compose(self, *args: str, timeout: float = CLI_TIMEOUT) -> str:
        argv = [
            *self.cli(),
            "--ansi",
            "never",
            "--project-name",
            self.project,
            "--file",
            self.compose_file,
        ]
        if os.path.exists(self.override_path):
            argv += ["--file", self.override_path]
        argv += list(args)
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeFailure(
                "`%s` did not finish within %ss" % (shlex.join(argv), timeout)
            ) from exc
        except OSError as exc:
            raise RuntimeFailure("run `%s`: %s" % (shlex.join(argv), exc)) from exc
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise RuntimeFailure(
                "`%s` failed (exit %d): %s"
                % (shlex.join(argv), result.returncode, "\n".join(output[-15:]))
            )
        return result.stdout

    # -- the files -----------------------------------------------------------------

    def _stack(self) -> dict:
        try:
            with open(self.compose_file) as handle:
                data = yaml.safe_load(handle) or {}
        except FileNotFoundError as exc:
            raise RuntimeFailure(
                "read the compose file of %s: %s does not exist"
                % (self.env, self.compose_file)
            ) from exc
        except yaml.YAMLError as exc:
            raise RuntimeFailure(
                "read the compose file %s: %s" % (self.compose_file, exc)
            ) from exc
        if not isinstance(data.get("services"), dict):
            raise RuntimeFailure(
                "read the compose file %s: it has no services" % self.compose_file
            )
        return data

    def _service_config(self, service: str) -> dict:
        services = self._stack()["services"]
        if service not in services:
            raise RuntimeFailure(
                "service %r is not in %s; its services are: %s"
                % (service, self.compose_file, ", ".join(sorted(services)))
            )
        return services[service] or {}

    def _override(self) -> tuple[str, dict]:
        text = read_text(self.override_path)
        try:
            data = (yaml.safe_load(text) or {}) if text else {}
        except yaml.YAMLError as exc:
            raise RuntimeFailure(
                "read %s: it is not valid YAML (%s)" % (self.override_path, exc)
            ) from exc
        if not isinstance(data, dict):
            raise RuntimeFailure("read %s: it is not a mapping" % self.override_path)
        return text, data

    def _override_deploy(self, data: dict, service: str) -> dict | None:
        entry = (data.get("services") or {}).get(service) or {}
        deploy = entry.get("deploy")
        return deploy if isinstance(deploy, dict) else None

    def _render_override(self, data: dict, service: str, deploy: dict) -> str:
        """The override with one service's replicas and resources replaced."""
        data = copy.deepcopy(data)
        stack = self._stack()
        ordered: dict = {}
        # Compose v1 only merges files of the same format version.
        if "version" in stack:
            ordered["version"] = str(stack["version"])
        for key, value in data.items():
            if key != "version":
                ordered[key] = value
        services = ordered.setdefault("services", {}) or {}
        ordered["services"] = services
        entry = services.setdefault(service, {}) or {}
        services[service] = entry
        written = dict(entry.get("deploy") or {})
        if "replicas" in deploy:
            written["replicas"] = deploy["replicas"]
        if "resources" in deploy:
            resources = compose_resources(deploy["resources"])
            if resources:
                written["resources"] = resources
            else:
                written.pop("resources", None)
        entry["deploy"] = written
        return OVERRIDE_HEADER + yaml.safe_dump(
            ordered, default_flow_style=False, sort_keys=False
        )

    # -- the engine's view ---------------------------------------------------------

    def _containers(self, service: str | None = None) -> list:
        labels = ["%s=%s" % (PROJECT_LABEL, self.project)]
        if service is not None:
            labels.append("%s=%s" % (SERVICE_LABEL, service))
        try:
            # A container Compose is removing may vanish between listing and
            # inspection; it is gone either way.
            found = self.client.containers.list(
                all=True, filters={"label": labels}, ignore_removed=True
            )
        except Exception as exc:
            raise RuntimeFailure(
                "list the containers of compose project %s: %s" % (self.project, exc)
            ) from exc
        found = [c for c in found if c.labels.get(ONEOFF_LABEL, "False") != "True"]
        return sorted(
            found, key=lambda c: (c.labels.get(SERVICE_LABEL, ""), _number(c))
        )

    def _default_replicas(self, service: str) -> int:
        config = self._service_config(service)
        deploy = config.get("deploy") or {}
        return int(deploy.get("replicas", config.get("scale", 1)))

    @staticmethod
    def _resources_match(container, resources: dict) -> bool:
        """Whether a container runs with the limits asked for. CPU reservations are
        not compared: Compose only passes them on to Swarm, never to a container."""
        host = container.attrs.get("HostConfig") or {}
        limits = resources.get("limits") or {}
        reservations = resources.get("reservations") or {}
        return (
            (host.get("Memory") or 0) == limits.get("memory", 0)
            and (host.get("NanoCpus") or 0) == (nano_cpus(limits.get("cpus")) or 0)
            and (host.get("MemoryReservation") or 0) == reservations.get("memory", 0)
        )

    def _definition(self, service, definition) -> ServiceDefinition | None:
        return definition or load_definition(self.state_dir, service)

    def _port(self, service: str) -> int | str | None:
        ports = self.options.get("ports") or {}
        if ports.get(service):
            return ports[service]
        definition = load_definition(self.state_dir, service)
        if definition is not None and definition.port:
            return definition.port
        config = self._service_config(service)
        for key in ("expose", "ports"):
            for entry in config.get(key) or []:
                if isinstance(entry, dict):
                    return entry.get("target")
                # "8080", "18080:8080", "127.0.0.1:18080:8080/tcp": the container
                # side is last.
                return str(entry).split("/")[0].rsplit(":", 1)[-1]
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
        """Write the service's deploy section and make the engine run it.

        `mode` is "grow" (start what is missing, stop nothing), "shrink" (stop what is
        beyond the count, recreate nothing) or "exact" (both, and recreate containers
        whose limits differ from the ones asked for).
        """
        definition = self._definition(service, definition)
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
        self._service_config(service)
        before, data = self._override()
        deploy = desired_deploy(
            self.state_dir,
            service,
            self._override_deploy(data, service),
            replicas=replicas,
            resources=resources,
        )
        containers = self._containers(service)
        if "replicas" not in deploy:
            # Nothing says how many yet: keep what runs (or Compose's own count),
            # and record it so a later plain `up` keeps it too.
            deploy["replicas"] = len(containers) or self._default_replicas(service)
        want = deploy["replicas"]
        if mode != "shrink" and deploy.get("resources"):
            check_resources(
                deploy["resources"],
                self.client,
                "%s of compose project %s" % (service, self.project),
            )
        after = self._render_override(data, service, deploy)

        change = Change()
        if before != after:
            change.add("write %s" % self.override_path)
            change.add_diff(self.override_path, before, after)

        if mode == "grow":
            target = max(want, len(containers))
        elif mode == "shrink":
            target = min(want, len(containers))
        else:
            target = want
        keep, extra = containers[:target], containers[target:]

        # Containers whose limits differ are recreated, all of the service's at once
        # as Compose does; with none of them differing nothing is recreated, so
        # scaling never restarts a replica that is already right.
        mismatched = []
        if mode != "shrink" and "resources" in deploy:
            mismatched = [
                c for c in keep if not self._resources_match(c, deploy["resources"])
            ]
        stopped = [c for c in keep if c.status != "running"]
        for container in keep if mismatched else stopped:
            if mismatched:
                change.add(
                    "recreate %s with %s"
                    % (container.name, describe_resources(deploy["resources"]))
                )
            else:
                change.add("start %s (it was %s)" % (container.name, container.status))
        if target > len(containers):
            change.add(
                "start %d more replica(s) of %s (%d -> %d)"
                % (target - len(containers), service, len(containers), target)
            )
        for container in reversed(extra):
            change.add("stop and remove %s" % container.name)

        engine_work = bool(mismatched or stopped or target != len(containers))
        if check:
            return change
        if before != after:
            write_text(self.override_path, after)
        if not engine_work:
            return change
        args = ["up", "--detach", "--no-deps", "--scale", "%s=%d" % (service, target)]
        args.append("--force-recreate" if mismatched else "--no-recreate")
        try:
            self._compose(*args, service)
        except RuntimeFailure as exc:
            raise RuntimeFailure(
                "scale %s of compose project %s to %d: %s%s"
                % (
                    service,
                    self.project,
                    target,
                    exc,
                    self._roll_back(service, before, after, len(containers)),
                )
            ) from exc
        self._wait(
            service,
            target,
            None if mode == "shrink" else deploy.get("resources"),
            wait_timeout,
        )
        return change

    def _roll_back(self, service: str, before: str, after: str, count: int) -> str:
        """Put the previous override back and run the service as it was, since
        Compose may have removed containers before it failed; says how that went."""
        if before == after:
            return ""
        if before:
            write_text(self.override_path, before)
        elif os.path.exists(self.override_path):
            os.remove(self.override_path)
        try:
            self._compose(
                "up",
                "--detach",
                "--no-deps",
                "--scale",
                "%s=%d" % (service, count),
                service,
            )
        except RuntimeFailure as exc:
            return "; restoring the previous state failed too: %s" % exc
        return "; the previous override and replicas were restored"

    def _wait(
        self, service: str, count: int, resources: dict | None, timeout: float
    ) -> None:
        """Poll the engine until exactly `count` containers of the service run, with
        the limits asked for, and pass their health checks where they have one."""
        deadline = time.monotonic() + timeout
        while True:
            containers = self._containers(service)
            problems = []
            running = [c for c in containers if c.status == "running"]
            if len(containers) != count or len(running) != count:
                problems.append(
                    "%d of %d running (%s)"
                    % (
                        len(running),
                        count,
                        ", ".join("%s %s" % (c.name, c.status) for c in containers)
                        or "no containers",
                    )
                )
            for container in running:
                state = container.attrs.get("State") or {}
                health = state.get("Health")
                if health and health.get("Status") != "healthy":
                    problems.append("%s is %s" % (container.name, health["Status"]))
                elif not health and _uptime(state) < MIN_UPTIME_S:
                    # Without a health check, a container counts as started once it
                    # has stayed up a moment, as supervisor's startsecs counts a
                    # program: one that dies at once is then seen dying.
                    problems.append("%s has only just started" % container.name)
                if resources is not None and not self._resources_match(
                    container, resources
                ):
                    problems.append("%s still has its old limits" % container.name)
            if not problems:
                return
            # A container that exited and that nothing restarts will not come back:
            # say so now rather than at the deadline.
            dead = [c for c in containers if self._gone_for_good(c)]
            if dead:
                state = dead[0].attrs.get("State") or {}
                raise RuntimeFailure(
                    "%s of compose project %s did not start: %s exited with code %s "
                    "and is not restarted%s"
                    % (
                        service,
                        self.project,
                        dead[0].name,
                        state.get("ExitCode"),
                        self._logs_of(dead),
                    )
                )
            if time.monotonic() > deadline:
                raise RuntimeFailure(
                    "%s of compose project %s did not converge within %ss: %s%s"
                    % (
                        service,
                        self.project,
                        timeout,
                        "; ".join(problems),
                        self._logs_of(containers),
                    )
                )
            time.sleep(0.5)

    @staticmethod
    def _gone_for_good(container) -> bool:
        if container.status not in ("exited", "dead"):
            return False
        policy = (container.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
        return policy.get("Name") in (None, "", "no")

    def _logs_of(self, containers: list) -> str:
        for container in containers:
            if container.status != "running":
                try:
                    tail = container.logs(tail=10).decode(errors="replace").strip()
                except Exception:  # noqa: S112 - the logs only explain a failure
                    continue
                return "\nlast log lines of %s:\n%s" % (
                    container.name,
                    tail or "(none)",
                )
        return ""

    # -- reading -------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        # A service the stack does not have has no instances, as with the process
        # runtime; changing it is what fails, naming the services there are.
        if service not in self._stack()["services"]:
            return []
        port = self._port(service)
        result = []
        for container in self._containers(service):
            state = container.attrs.get("State") or {}
            result.append(
                Instance(
                    name=container.name,
                    service=service,
                    # Replicas reach each other, and nginx reaches them, by
                    # container name on the project's network.
                    endpoint="%s:%s" % (container.name, port)
                    if port
                    else container.name,
                    state=container.status,
                    pid=state.get("Pid") or None,
                )
            )
        return result

    def planned_endpoints(self, service, replicas, definition=None) -> list[str]:
        """The endpoints of the first `replicas` containers by number, with the names
        Compose will give the ones it has yet to start (check mode plans them)."""
        port = self._port(service)
        containers = self._containers(service)
        names = [c.name for c in containers[:replicas]]
        if len(names) < replicas:
            # Compose v1 joins project, service and number with "_", v2 with "-".
            separator = "_" if self._separator_is_underscore(containers) else "-"
            number = max((_number(c) for c in containers), default=0)
            while len(names) < replicas:
                number += 1
                names.append(separator.join((self.project, service, str(number))))
        return ["%s:%s" % (name, port) if port else name for name in names]

    def _separator_is_underscore(self, containers: list) -> bool:
        for container in containers:
            service = container.labels.get(SERVICE_LABEL, "")
            return container.name.startswith("%s_%s_" % (self.project, service))
        self.cli()
        return self._cli_major == 1

    def running_resources(self, service: str) -> dict:
        """The limits the first running container of a service has, parsed."""
        for container in self._containers(service):
            if container.status == "running":
                host = container.attrs.get("HostConfig") or {}
                return parse_resources(
                    {
                        "limits": {
                            "memory": host.get("Memory") or None,
                            "cpus": (host.get("NanoCpus") or 0) / 1e9 or None,
                        },
                        "reservations": {
                            "memory": host.get("MemoryReservation") or None
                        },
                    }
                )
        return {}

    def usage(self, instances: list[Instance]) -> dict[str, dict]:
        return containers_usage(self.client, [i.name for i in instances if i.running])

    def enforcement(self) -> str | None:
        return engine_enforcement(self.client)

    def stop_all(self, check: bool) -> Change:
        change = Change()
        containers = self._containers()
        for container in reversed(containers):
            change.add("stop and remove %s" % container.name)
        if containers and not check:
            try:
                self._compose("down", "--timeout", "30")
            except RuntimeFailure as exc:
                raise RuntimeFailure(
                    "stop compose project %s: %s" % (self.project, exc)
                ) from exc
        return change
