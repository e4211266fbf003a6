"""Memory and CPU limits for process-runtime instances, through the kernel's cgroups.

Each instance gets a cgroup of its own, `nself/<env>/<instance>`, in the memory and cpu
hierarchies (cgroup v1) or in the unified hierarchy (cgroup v2). The launcher puts the
instance into it before it starts the program, so a program restarted by supervisor is
limited as well; limits can be changed while the program runs.

A service's limits are kept in `<state>/cgroups/<service>.json`; every instance of it
starts with them, and they are set again after a reboot clears the kernel's cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os

V1_ROOT = "/sys/fs/cgroup"
CFS_PERIOD = 100_000
# A v1 "no limit" reads back as the largest page-aligned 64-bit number.
V1_UNLIMITED = 9223372036854771712


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def version(root: str = V1_ROOT) -> int | None:
    """1 or 2 for the hierarchy limits go into, None when neither is usable."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        controllers = (_read(os.path.join(root, "cgroup.controllers")) or "").split()
        return 2 if {"memory", "cpu"} <= set(controllers) else None
    if os.path.isdir(os.path.join(root, "memory")) and os.path.isdir(
        os.path.join(root, "cpu")
    ):
        return 1
    return None


def _quota(cpus: float) -> int:
    """A CPU limit as the CFS quota per period, in microseconds."""
    return round(cpus * CFS_PERIOD)


def as_enforced(limits: dict) -> dict:
    """Limits as the kernel holds them once written: memory in whole pages, CPUs
    in whole microseconds of quota. Comparing in these units keeps a limit that
    is already in force from looking changed."""
    enforced = dict(limits)
    if enforced.get("memory"):
        page = os.sysconf("SC_PAGE_SIZE")
        enforced["memory"] = enforced["memory"] // page * page
    if enforced.get("cpus"):
        enforced["cpus"] = _quota(enforced["cpus"]) / CFS_PERIOD
    return enforced


def _write_order(path: str, files: dict[str, str]) -> list[tuple[str, str]]:
    """Control files in an order the kernel accepts: in v1 the memory limit may never
    exceed the memory-and-swap limit, so when the limit rises memory-and-swap goes
    first, and when it falls, last."""
    items = list(files.items())
    memsw = "memory.memsw.limit_in_bytes"
    if memsw not in files:
        return items
    current = int(_read(os.path.join(path, "memory.limit_in_bytes")) or V1_UNLIMITED)
    new = int(files["memory.limit_in_bytes"])
    rising = new < 0 or new > current
    rest = [item for item in items if item[0] != memsw]
    return [(memsw, files[memsw])] + rest if rising else rest + [(memsw, files[memsw])]


class Cgroups:
    """The cgroups of one environment's instances."""

    def __init__(self, state_dir: str, env: str, root: str = V1_ROOT) -> None:
        self.state_dir = state_dir
        self.env = env
        self.root = root
        self.version = version(root)

    # -- where things are ----------------------------------------------------------

    def relative(self, instance: str) -> str:
        return os.path.join("nself", self.env, instance)

    def paths(self, instance: str) -> dict[str, str]:
        """The cgroup folder of an instance per controller ("memory", "cpu")."""
        rel = self.relative(instance)
        if self.version == 2:
            path = os.path.join(self.root, rel)
            return {"memory": path, "cpu": path}
        return {c: os.path.join(self.root, c, rel) for c in ("memory", "cpu")}

    def limits_path(self, service: str) -> str:
        return os.path.join(self.state_dir, "cgroups", service + ".json")

    # -- can limits be enforced ----------------------------------------------------

    def unavailable(self) -> str | None:
        """Why limits cannot be enforced on this host, or None when they can.

        Only looks: the folders are created when an instance is first limited, so a
        dry run or a status query leaves the kernel's cgroups as they were.
        """
        if self.version is None:
            return "the host offers no memory and cpu cgroup controllers"
        for path in set(self.paths("probe").values()):
            existing = os.path.dirname(path)
            while not os.path.isdir(existing):
                existing = os.path.dirname(existing)
            if not os.access(existing, os.W_OK):
                return "cgroups cannot be created here (%s is not writable)" % existing
        return None

    def _enable_v2_controllers(self, leaf_parent: str) -> None:
        # In v2 a cgroup's controllers must be enabled in every ancestor's
        # subtree_control, from the root down.
        rel = os.path.relpath(leaf_parent, self.root)
        current = self.root
        for part in [""] + rel.split(os.sep):
            current = os.path.join(current, part) if part else current
            os.makedirs(current, exist_ok=True)
            control = os.path.join(current, "cgroup.subtree_control")
            enabled = (_read(control) or "").split()
            for controller in ("memory", "cpu"):
                if controller not in enabled:
                    _write(control, "+" + controller)

    # -- limits --------------------------------------------------------------------

    def stored(self, service: str) -> dict:
        text = _read(self.limits_path(service))
        return json.loads(text) if text else {}

    def store(self, service: str, resources: dict) -> None:
        path = self.limits_path(service)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(resources, handle, sort_keys=True)
        os.replace(tmp, path)

    def forget(self, instance: str) -> None:
        """Remove an instance's cgroups once it has stopped."""
        for path in set(self.paths(instance).values()):
            with contextlib.suppress(OSError):
                os.rmdir(path)

    def desired_files(self, resources: dict) -> dict[str, dict[str, str]]:
        """The control files and values for parsed resources, per controller."""
        limits = resources.get("limits", {})
        reservations = resources.get("reservations", {})
        memory, cpus = limits.get("memory"), limits.get("cpus")
        soft, share = reservations.get("memory"), reservations.get("cpus")
        if self.version == 2:
            files = {
                "memory": {
                    "memory.max": str(memory) if memory else "max",
                    "memory.low": str(soft or 0),
                },
                "cpu": {
                    "cpu.max": "%s %d" % (_quota(cpus) if cpus else "max", CFS_PERIOD),
                    "cpu.weight": str(max(1, min(10000, int(100 * (share or 1))))),
                },
            }
            if self._swap_accounted():
                # A limited instance may not swap: over its limit it is stopped.
                files["memory"]["memory.swap.max"] = "0" if memory else "max"
            return files
        files = {
            "memory": {
                "memory.limit_in_bytes": str(memory) if memory else "-1",
                "memory.soft_limit_in_bytes": str(soft) if soft else "-1",
            },
            "cpu": {
                "cpu.cfs_period_us": str(CFS_PERIOD),
                "cpu.cfs_quota_us": str(_quota(cpus)) if cpus else "-1",
                "cpu.shares": str(max(2, int(1024 * (share or 1)))),
            },
        }
        if self._swap_accounted():
            # Memory and swap together are held to the memory limit, so a limited
            # instance cannot swap either.
            files["memory"]["memory.memsw.limit_in_bytes"] = (
                str(memory) if memory else "-1"
            )
        return files

    def _swap_accounted(self) -> bool:
        name = "memory.swap.max" if self.version == 2 else "memory.memsw.limit_in_bytes"
        parent = self.root if self.version == 2 else os.path.join(self.root, "memory")
        # The root cgroup has no limit files in v2; any child shows them.
        return os.path.exists(os.path.join(parent, name)) or any(
            os.path.exists(os.path.join(parent, child, name))
            for child in ("nself", "system.slice", "init.scope")
        )

    def current(self, instance: str) -> dict | None:
        """The parsed limits the kernel holds for an instance, None without a cgroup."""
        paths = self.paths(instance)
        if not os.path.isdir(paths["memory"]):
            return None
        if self.version == 2:
            memory = _read(os.path.join(paths["memory"], "memory.max"))
            quota = (_read(os.path.join(paths["cpu"], "cpu.max")) or "max").split()
            limits = {}
            if memory and memory != "max":
                limits["memory"] = int(memory)
            if quota[0] != "max":
                limits["cpus"] = int(quota[0]) / int(quota[1])
            return {"limits": limits} if limits else {}
        memory = int(_read(os.path.join(paths["memory"], "memory.limit_in_bytes")) or 0)
        quota = int(_read(os.path.join(paths["cpu"], "cpu.cfs_quota_us")) or -1)
        period = int(_read(os.path.join(paths["cpu"], "cpu.cfs_period_us")) or 1)
        limits = {}
        if 0 < memory < V1_UNLIMITED:
            limits["memory"] = memory
        if quota > 0:
            limits["cpus"] = quota / period
        return {"limits": limits} if limits else {}

    def apply(self, instance: str, resources: dict) -> None:
        """Create the instance's cgroups and set their control files."""
        for controller, files in self.desired_files(resources).items():
            path = self.paths(instance)[controller]
            if self.version == 2:
                self._enable_v2_controllers(os.path.dirname(path))
            os.makedirs(path, exist_ok=True)
            for name, value in _write_order(path, files):
                _write(os.path.join(path, name), value)

    def join(self, instance: str, pid: int) -> None:
        """Move a process into the instance's cgroups."""
        for path in set(self.paths(instance).values()):
            _write(os.path.join(path, "cgroup.procs"), str(pid))

    def members(self, instance: str) -> list[int]:
        text = _read(os.path.join(self.paths(instance)["memory"], "cgroup.procs"))
        return [int(pid) for pid in (text or "").split()]

    def memory_usage(self, instance: str) -> int | None:
        path = self.paths(instance)["memory"]
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        value = _read(os.path.join(path, name))
        return int(value) if value else None

    def oom_kills(self, instance: str) -> int:
        """How many processes the kernel killed for exceeding the memory limit."""
        path = self.paths(instance)["memory"]
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for line in (_read(os.path.join(path, name)) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0
