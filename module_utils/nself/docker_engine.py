"""What the compose and swarm runtimes share: the engine connection, the checks of
limits the engine would refuse, the desired `deploy:` section of a service, and usage
figures from the engine's stats.

Resources travel in two shapes (see scaling.py for both and the helpers between them).
Parsed, as `Runtime.set_resources` takes them: {"limits": {"memory": 536870912,
"cpus": 0.5}, "reservations": {...}}. And as Compose and scaling.yaml write them:
{"limits": {"memory": "512M", "cpus": "0.5"}, ...}.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.nself import scaling
from ansible.module_utils.nself.runtime import Change, Instance, Runtime, RuntimeFailure
from ansible.module_utils.nself.scaling import (
    format_cpus,
    format_memory,
    parse_resources,
)


def connect(options: dict):
    """A client of the engine the inventory names (DOCKER_HOST and the local socket
    otherwise), checked with a ping so later errors are about the work, not the link."""
    try:
        import docker
    except ImportError as exc:
        raise RuntimeFailure(
            "connect to the Docker Engine: the Docker SDK for Python is not "
            "installed on this host (%s)" % exc
        ) from exc
    base_url = options.get("docker_host")
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, version="auto")
        else:
            client = docker.from_env(version="auto")
        client.ping()
    except Exception as exc:
        raise RuntimeFailure(
            "connect to the Docker Engine at %s: %s"
            % (base_url or "the local socket (or DOCKER_HOST)", exc)
        ) from exc
    return client


def engine_enforcement(client) -> str | None:
    """Why the engine cannot enforce memory and CPU limits, or None when it can."""
    try:
        info = client.info()
    except Exception as exc:
        return "the Docker Engine did not say whether it enforces limits: %s" % exc
    missing = []
    if not info.get("MemoryLimit", True):
        missing.append("memory limits (no memory cgroup)")
    if not info.get("CpuCfsQuota", True):
        missing.append("CPU limits (no CFS quota)")
    if missing:
        return "the Docker Engine cannot enforce %s" % " or ".join(missing)
    return None


# The engine refuses a container memory limit below this (and a replica would not
# start with one that small anyway).
MIN_MEMORY_LIMIT = 6 * 1024**2


def check_resources(resources: dict, client, target: str) -> None:
    """Refuse, before anything is stopped, limits the engine would refuse only after
    the old replicas are gone."""
    parsed = parse_resources(resources)
    limits = parsed.get("limits") or {}
    reservations = parsed.get("reservations") or {}
    problems = []
    if "memory" in limits and limits["memory"] < MIN_MEMORY_LIMIT:
        problems.append(
            "a memory limit of %s is below the engine's minimum of 6M"
            % format_memory(limits["memory"])
        )
    if (
        "memory" in limits
        and "memory" in reservations
        and reservations["memory"] > limits["memory"]
    ):
        problems.append(
            "the memory reservation %s is above the limit %s"
            % (format_memory(reservations["memory"]), format_memory(limits["memory"]))
        )
    try:
        cores = int(client.info().get("NCPU") or 0)
    except Exception:
        cores = 0
    for kind, values in parsed.items():
        cpus = values.get("cpus")
        if cpus is None:
            continue
        if cpus < 0.01:
            problems.append("%s cpus %s is below 0.01" % (kind, format_cpus(cpus)))
        elif cores and cpus > cores:
            problems.append(
                "%s cpus %s is more than the %d CPUs of the engine's host"
                % (kind, format_cpus(cpus), cores)
            )
    if problems:
        raise RuntimeFailure(
            "set the resources of %s: %s" % (target, "; ".join(problems))
        )


# -- desired state -------------------------------------------------------------------


def stored_deploy(state_dir: str, service: str) -> dict | None:
    """The replicas and resources scaling.yaml asks of a service, or None when it asks
    nothing of it."""
    entry = scaling.load(state_dir)["services"].get(service) or {}
    deploy = entry.get("deploy")
    if not isinstance(deploy, dict):
        return None
    return {key: deploy[key] for key in ("replicas", "resources") if key in deploy}


def desired_deploy(
    state_dir: str,
    service: str,
    current: dict | None,
    replicas: int | None = None,
    resources: dict | None = None,
) -> dict:
    """What a service should run with, key by key: the call's own value (check mode
    has not written it to scaling.yaml yet), else scaling.yaml's (the environment's
    record of what the operator asked for), else what the runtime has now. A key
    none of them knows stays out. Resources come back parsed."""
    stored = stored_deploy(state_dir, service) or {}
    current = current or {}
    deploy: dict = {}
    for base in (current, stored):
        if base.get("replicas") is not None:
            deploy["replicas"] = int(base["replicas"])
        if base.get("resources") is not None:
            deploy["resources"] = parse_resources(base["resources"])
    if replicas is not None:
        deploy["replicas"] = int(replicas)
    if resources is not None:
        deploy["resources"] = parse_resources(resources)
    return deploy


# -- usage ---------------------------------------------------------------------------


def stats_usage(stats: dict) -> dict:
    """CPU % of one core and memory in use from one reading of the engine's stats, the
    way `docker stats` counts them (page cache that can be dropped is not use)."""
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    total = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
    pre_total = (pre.get("cpu_usage") or {}).get("total_usage", 0)
    system = cpu.get("system_cpu_usage", 0)
    pre_system = pre.get("system_cpu_usage", 0)
    cores = cpu.get("online_cpus") or len(
        (cpu.get("cpu_usage") or {}).get("percpu_usage") or []
    )
    cpu_percent = 0.0
    if system > pre_system and total >= pre_total and pre_system:
        cpu_percent = (total - pre_total) / (system - pre_system) * (cores or 1) * 100
    memory = stats.get("memory_stats") or {}
    used = memory.get("usage", 0)
    details = memory.get("stats") or {}
    inactive = details.get("total_inactive_file", details.get("inactive_file", 0))
    if 0 < inactive < used:
        used -= inactive
    return {"cpu_percent": round(cpu_percent, 2), "memory_bytes": int(used)}


USAGE_READERS = 8


def containers_usage(client, names: list[str]) -> dict[str, dict]:
    """Usage per container name, read from every container at once: one reading takes
    the engine about a second, as it samples the CPU twice."""
    import docker

    results: dict[str, dict] = {}
    errors: dict[str, str] = {}

    def read(name: str) -> None:
        try:
            stats = client.containers.get(name).stats(stream=False)
        except docker.errors.NotFound:
            # A container of another swarm node, or one that just went away.
            return
        except Exception as exc:
            errors[name] = str(exc)
            return
        results[name] = stats_usage(stats)

    # As many readings at once as the client keeps connections to the engine.
    with ThreadPoolExecutor(max_workers=USAGE_READERS) as pool:
        list(pool.map(read, names))
    if errors:
        name, error = sorted(errors.items())[0]
        raise RuntimeFailure("read the usage of %s from the engine: %s" % (name, error))
    return results


def containers_limits(client, names: list[str]) -> dict[str, dict]:
    """The memory and CPU limits of each container, as the engine holds them."""
    import docker

    limits = {}
    for name in names:
        try:
            host = client.containers.get(name).attrs.get("HostConfig") or {}
        except docker.errors.NotFound:
            continue
        except Exception as exc:
            raise RuntimeFailure(
                "read the limits of %s from the engine: %s" % (name, exc)
            ) from exc
        found = {}
        if host.get("Memory"):
            found["memory"] = int(host["Memory"])
        if host.get("NanoCpus"):
            found["cpus"] = host["NanoCpus"] / 1e9
        elif host.get("CpuQuota") and host.get("CpuPeriod"):
            found["cpus"] = host["CpuQuota"] / host["CpuPeriod"]
        limits[name] = found
    return limits


class DeployRuntime(Runtime):
    """A runtime that applies a whole `deploy:` section at once (Compose, Swarm).

    Each scaling step is the same call with a different mode; subclasses implement
    `_apply(service, check, wait_timeout, definition, *, replicas, resources, mode)`,
    where mode is "grow" (start what is missing, stop nothing), "shrink" (stop what is
    beyond the count) or "exact" (both).
    """

    def converge(
        self, service, replicas, check, wait_timeout=60.0, definition=None
    ) -> Change:
        return self._apply(
            service, check, wait_timeout, definition, replicas=replicas, mode="exact"
        )

    def grow(
        self, service, replicas, check, wait_timeout=60.0, definition=None
    ) -> Change:
        return self._apply(
            service, check, wait_timeout, definition, replicas=replicas, mode="grow"
        )

    def shrink(self, service, replicas, check, definition=None) -> Change:
        return self._apply(
            service, check, 60.0, definition, replicas=replicas, mode="shrink"
        )

    def limits_in_force(self, instances: list[Instance]) -> dict[str, dict]:
        return containers_limits(self.client, [i.name for i in instances if i.running])

    def set_resources(self, service, resources, check, wait_timeout=60.0) -> Change:
        return self._apply(
            service, check, wait_timeout, None, resources=resources, mode="exact"
        )

    def _apply(self, service, check, wait_timeout, definition, **what) -> Change:
        raise NotImplementedError
