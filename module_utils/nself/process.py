"""The `process` runtime: each instance is a program of the environment's supervisor."""

from __future__ import annotations

import glob
import os
import pkgutil
import shlex
import sys
import time

from ansible.module_utils.nself import launcher  # noqa: F401 - shipped to hosts
from ansible.module_utils.nself.cgroups import Cgroups, as_enforced
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
from ansible.module_utils.nself.scaling import describe_resources, parse_resources
from ansible.module_utils.nself.supervisor import ALIVE_STATES, Supervisor

# Files the launcher needs on the host, from this package: (source, name in bin/).
LAUNCHER_FILES = (("launcher.py", "nself-launch"), ("cgroups.py", "nself_cgroups.py"))

PROGRAM_TEMPLATE = """\
; Written by nself-ops: instance {instance} of service {service}.
[program:{instance}]
command={command}
{directory}environment={environment}
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
        self.cgroups = Cgroups(state_dir, env)
        self.bin_dir = os.path.join(state_dir, "bin")

    # -- rendering -----------------------------------------------------------------

    def render_program(self, definition: ServiceDefinition, instance: str) -> str:
        values = {
            "instance": instance,
            "port": definition.port_of(instance),
            "state_dir": self.state_dir,
        }
        # Every instance starts through the launcher, which puts it into its cgroups
        # and then becomes the program as the service's account.
        argv = [
            sys.executable,
            os.path.join(self.bin_dir, "nself-launch"),
            "--state-dir",
            self.state_dir,
            "--env",
            self.env,
            "--service",
            definition.name,
            "--instance",
            instance,
        ]
        if definition.user:
            argv += ["--user", definition.user]
        argv.append("--")
        argv += [_fill(arg, values) for arg in definition.command]
        env = {"NSELF_REPLICA": instance, "NSELF_ENV": self.env}
        env.update({k: _fill(v, values) for k, v in definition.env.items()})
        return PROGRAM_TEMPLATE.format(
            instance=instance,
            service=definition.name,
            command=" ".join(shlex.quote(arg) for arg in argv).replace("%", "%%"),
            directory="directory=%s\n" % definition.directory
            if definition.directory
            else "",
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

        self.install_launcher()
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
                self.cgroups.forget(instance)
        if extra and not check:
            self.supervisor.reread()
        return change

    def install_launcher(self) -> None:
        """Write the launcher and its cgroup code into the state folder's bin/."""
        for source, name in LAUNCHER_FILES:
            text = pkgutil.get_data("ansible.module_utils.nself", source).decode()
            path = os.path.join(self.bin_dir, name)
            if read_text(path) != text:
                write_text(path, text, 0o755)

    # -- resources -----------------------------------------------------------------

    def enforcement(self) -> str | None:
        if os.geteuid() != 0:
            return "limits need root to create cgroups; the services run unlimited"
        return self.cgroups.unavailable()

    def set_resources(self, service, resources, check, wait_timeout=60.0) -> Change:
        resources = parse_resources(resources)
        change = Change()
        path = self.cgroups.limits_path(service)
        stored = self.cgroups.stored(service)
        if stored != resources:
            change.add(
                "set %s's resources to %s" % (service, describe_resources(resources))
            )
            change.add_diff(
                path,
                describe_resources(stored) + "\n" if stored else "",
                describe_resources(resources) + "\n",
            )
            if not check:
                self.cgroups.store(service, resources)
        reason = self.enforcement()
        if reason:
            return change
        for instance in self.instances(service):
            if not instance.running:
                continue
            want = as_enforced(resources.get("limits", {}))
            have = (self.cgroups.current(instance.name) or {}).get("limits", {})
            members = set(self.cgroups.members(instance.name))
            if have == want and instance.pid in members:
                continue
            change.add(
                "limit %s to %s" % (instance.name, describe_resources({"limits": want}))
            )
            if not check:
                self.cgroups.apply(instance.name, resources)
                if instance.pid not in members:
                    # Started before it had a cgroup: move it and all its processes.
                    for pid in [instance.pid] + _descendants(instance.pid):
                        self.cgroups.join(instance.name, pid)
        return change

    def limits_in_force(self, instances: list[Instance]) -> dict[str, dict]:
        if self.enforcement():
            return {}
        return {
            i.name: (self.cgroups.current(i.name) or {}).get("limits", {})
            for i in instances
            if i.running
        }

    def usage(self, instances: list[Instance]) -> dict[str, dict]:
        """CPU % over a short sample and memory now, for each running instance."""
        running = [i for i in instances if i.running and i.pid]
        trees = {i.name: [i.pid] + _descendants(i.pid) for i in running}
        before = {name: _cpu_ticks(pids) for name, pids in trees.items()}
        start = time.monotonic()
        time.sleep(0.5)
        elapsed = time.monotonic() - start
        after = {name: _cpu_ticks(pids) for name, pids in trees.items()}
        ticks = os.sysconf("SC_CLK_TCK")
        result = {}
        for name, pids in trees.items():
            cpu = (after[name] - before[name]) / ticks / elapsed * 100
            memory = self.cgroups.memory_usage(name) if not self.enforcement() else None
            if memory is None or not self.cgroups.members(name):
                memory = sum(_rss(pid) for pid in pids)
            result[name] = {"cpu_percent": round(cpu, 1), "memory_bytes": memory}
        return result

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


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total


def _rss(pid: int) -> int:
    try:
        with open("/proc/%d/statm" % pid) as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0
