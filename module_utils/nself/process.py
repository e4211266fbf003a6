"""The `process` runtime: each instance is a program of the environment's supervisor."""

from __future__ import annotations

import glob
import os
import shlex

from ansible.module_utils.nself.health import wait_healthy
from ansible.module_utils.nself.runtime import (
    Change,
    Instance,
    Runtime,
    RuntimeFailure,
    ServiceDefinition,
    load_definition,
    read_text,
    write_text,
)
from ansible.module_utils.nself.supervisor import ALIVE_STATES, Supervisor

PROGRAM_TEMPLATE = """\
; Written by nself-ops: instance {instance} of service {service}.
[program:{instance}]
command={command}
{directory}{user}environment={environment}
autostart=true
autorestart=true
startsecs=1
startretries=5
stopsignal={stopsignal}
stopwaitsecs={stopwaitsecs}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={log}
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=3
"""


def _fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{%s}" % key, str(value))
    return text


def _env_value(value: str) -> str:
    # supervisor parses environment= as KEY="value" pairs; quotes and percent signs
    # inside a value must be escaped or they end the value early.
    return '"%s"' % value.replace("%", "%%").replace('"', '\\"')


class ProcessRuntime(Runtime):
    """Services as supervisor programs; replicas as programs on their own ports."""

    name = "process"

    def __init__(self, state_dir: str, env: str, options: dict | None = None) -> None:
        super().__init__(state_dir, env, options)
        self.supervisor = Supervisor(state_dir, env)

    # -- rendering -----------------------------------------------------------------

    def render_program(self, definition: ServiceDefinition, instance: str) -> str:
        values = {
            "instance": instance,
            "port": definition.port_of(instance),
            "state_dir": self.state_dir,
        }
        argv = [_fill(arg, values) for arg in definition.command]
        env = {"NSELF_REPLICA": instance, "NSELF_ENV": self.env}
        env.update({k: _fill(v, values) for k, v in definition.env.items()})
        return PROGRAM_TEMPLATE.format(
            instance=instance,
            service=definition.name,
            command=" ".join(shlex.quote(arg) for arg in argv).replace("%", "%%"),
            directory="directory=%s\n" % definition.directory
            if definition.directory
            else "",
            user="user=%s\n" % definition.user if definition.user else "",
            environment=",".join(
                "%s=%s" % (k, _env_value(v)) for k, v in sorted(env.items())
            ),
            stopsignal=definition.stopsignal,
            stopwaitsecs=definition.stopwaitsecs,
            log=self.supervisor.log_path(instance),
        )

    def _program_files(self, service: str) -> dict[str, str]:
        """The program files on disk that belong to a service, by instance name."""
        found = {}
        pattern = os.path.join(self.supervisor.programs_dir, "*.conf")
        for path in glob.glob(pattern):
            instance = os.path.basename(path)[:-5]
            base, _, index = instance.rpartition("_")
            if instance == service or (base == service and index.isdigit()):
                found[instance] = path
        return found

    def _definition(self, service: str) -> ServiceDefinition:
        definition = load_definition(self.state_dir, service)
        if definition is None:
            raise RuntimeFailure(
                "service %r is not defined in %s; run `invoke up` first"
                % (service, self.state_dir)
            )
        return definition

    # -- converging ----------------------------------------------------------------

    def converge(
        self, service, replicas, check, wait_timeout=60.0, definition=None
    ) -> Change:
        change = self.grow(service, replicas, check, wait_timeout, definition)
        change.merge(self.shrink(service, replicas, check, definition))
        return change

    def grow(
        self, service, replicas, check, wait_timeout=60.0, definition=None
    ) -> Change:
        definition = definition or self._definition(service)
        if not definition.replicable and replicas != 1:
            raise RuntimeFailure(
                "service %r runs as a single instance; it cannot have %d replicas"
                % (service, replicas)
            )
        change = Change()
        running = self.supervisor.processes()
        to_add, to_restart, to_start = [], [], []
        for instance in definition.instance_names(replicas):
            path = self.supervisor.program_path(instance)
            before, after = read_text(path), self.render_program(definition, instance)
            info = running.get(instance)
            if before != after:
                change.add_diff(path, before, after)
                if info is None:
                    change.add(
                        "start %s on %s" % (instance, definition.endpoint_of(instance))
                    )
                    to_add.append(instance)
                else:
                    change.add("restart %s with its new settings" % instance)
                    to_restart.append(instance)
            elif info is None:
                change.add(
                    "start %s on %s" % (instance, definition.endpoint_of(instance))
                )
                to_add.append(instance)
            elif info["statename"] not in ALIVE_STATES:
                change.add(
                    "start %s (it was %s)" % (instance, info["statename"].lower())
                )
                to_start.append(instance)
            if not check and before != after:
                write_text(path, after)
        if check or not change.changed:
            return change

        self.supervisor.reread()
        for instance in to_add:
            self.supervisor.add(instance)
        for instance in to_start:
            self.supervisor.start_program(instance)
        self._wait(definition, to_add + to_start, wait_timeout)
        # Changed instances are replaced one at a time, each healthy before the next,
        # so a replicated service keeps answering throughout.
        for instance in to_restart:
            self.supervisor.remove(instance)
            self.supervisor.add(instance)
            self._wait(definition, [instance], wait_timeout)
        return change

    def shrink(
        self,
        service: str,
        replicas: int,
        check: bool,
        definition: ServiceDefinition | None = None,
    ) -> Change:
        """Stop and forget the instances beyond `replicas`, highest index first."""
        definition = definition or self._definition(service)
        keep = set(definition.instance_names(replicas))
        change = Change()
        extra = sorted(
            (name for name in self._program_files(service) if name not in keep),
            key=lambda name: int(name.rpartition("_")[2] or 0),
            reverse=True,
        )
        for instance in extra:
            path = self.supervisor.program_path(instance)
            change.add("stop and remove %s" % instance)
            change.add_diff(path, read_text(path), "")
            if not check:
                self.supervisor.remove(instance)
                os.remove(path)
        if extra and not check:
            self.supervisor.reread()
        return change

    def _wait(self, definition: ServiceDefinition, instances: list[str], timeout):
        for instance in instances:
            ok, reason = wait_healthy(
                definition.endpoint_of(instance), definition.health, timeout
            )
            if not ok:
                raise RuntimeFailure(
                    "%s did not become healthy within %ss (%s); last log lines:\n%s"
                    % (instance, timeout, reason, self.log_tail(instance))
                )

    # -- reading -------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        definition = load_definition(self.state_dir, service)
        if definition is None:
            return []
        running = self.supervisor.processes()
        result = []
        for instance in sorted(
            self._program_files(service),
            key=lambda name: int(name.rpartition("_")[2]) if name != service else 0,
        ):
            info = running.get(instance, {})
            result.append(
                Instance(
                    name=instance,
                    service=service,
                    endpoint=definition.endpoint_of(instance),
                    state=info.get("statename", "STOPPED"),
                    pid=info.get("pid") or None,
                )
            )
        return result

    def log_tail(self, instance: str, lines: int = 20) -> str:
        text = read_text(self.supervisor.log_path(instance))
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self, check: bool) -> Change:
        change = Change()
        if self.supervisor.is_running():
            change.add("stop supervisord and every program of %s" % self.env)
            if not check:
                self.supervisor.shutdown()
        return change
