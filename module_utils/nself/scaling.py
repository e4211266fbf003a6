"""The environment's desired scaling, kept in `scaling.yaml` in its state folder.

The file is shaped like the `deploy:` section of a Compose file, so operators who know
Compose read it at a glance:

    services:
      api:
        deploy:
          replicas: 3
          resources:
            limits: {memory: 512M, cpus: "0.5"}
            reservations: {memory: 256M, cpus: "0.25"}
"""

from __future__ import annotations

import os
import re

import yaml
from ansible.module_utils.nself.runtime import RuntimeFailure

RESOURCE_KINDS = ("limits", "reservations")
RESOURCE_KEYS = ("memory", "cpus")

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def scaling_path(state_dir: str) -> str:
    return os.path.join(state_dir, "scaling.yaml")


def load(state_dir: str) -> dict:
    """The desired state, or an empty one where nothing was scaled yet."""
    try:
        with open(scaling_path(state_dir)) as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        data = {}
    data.setdefault("services", {})
    return data


def dump(data: dict) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True)


def desired_replicas(state_dir: str, service: str, default: int = 1) -> int:
    deploy = load(state_dir)["services"].get(service, {}).get("deploy", {})
    return int(deploy.get("replicas", default))


def desired_resources(state_dir: str, service: str) -> dict:
    """A service's resources as scaling.yaml spells them ("512M", "0.5")."""
    deploy = load(state_dir)["services"].get(service, {}).get("deploy", {})
    return deploy.get("resources") or {}


def with_replicas(data: dict, service: str, replicas: int) -> dict:
    """A copy of the desired state with a service's replicas set."""
    data = yaml.safe_load(dump(data)) or {"services": {}}
    entry = data["services"].setdefault(service, {})
    entry.setdefault("deploy", {})["replicas"] = int(replicas)
    return data


def with_resources(data: dict, service: str, resources: dict) -> dict:
    """A copy of the desired state with a service's resources (any shape) set."""
    data = yaml.safe_load(dump(data)) or {"services": {}}
    entry = data["services"].setdefault(service, {})
    entry.setdefault("deploy", {})["resources"] = compose_resources(resources)
    return data


# -- sizes ---------------------------------------------------------------------------


def parse_memory(value) -> int | None:
    """Bytes from 536870912, "512M", "512m", "512MiB" or "1.5G"; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RuntimeFailure("memory %r is not a size" % (value,))
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise RuntimeFailure(
            "memory %r is not a size; use a number with K, M or G, like 512M" % value
        )
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


def format_memory(value: int) -> str:
    """The shortest exact Compose spelling of a number of bytes: 536870912 -> 512M."""
    for unit in ("T", "G", "M", "K"):
        size = _UNITS[unit.lower()]
        if value >= size and value % size == 0:
            return "%d%s" % (value // size, unit)
    return "%db" % value


def parse_cpus(value) -> float | None:
    if value is None:
        return None
    try:
        cpus = float(value)
    except (TypeError, ValueError) as exc:
        raise RuntimeFailure("cpus %r is not a number of CPUs" % (value,)) from exc
    return cpus


def format_cpus(value: float) -> str:
    """CPUs as Compose quotes them: 2 -> "2", 0.5 -> "0.5"."""
    text = ("%.3f" % value).rstrip("0").rstrip(".")
    return text or "0"


def nano_cpus(cpus: float | None) -> int | None:
    return None if cpus is None else int(round(cpus * 1e9))


def parse_resources(resources: dict | None) -> dict:
    """Parsed resources from either shape, without empty or unknown keys."""
    parsed: dict = {}
    for kind in RESOURCE_KINDS:
        section = (resources or {}).get(kind) or {}
        values = {}
        memory = parse_memory(section.get("memory"))
        cpus = parse_cpus(section.get("cpus"))
        if memory is not None:
            values["memory"] = memory
        if cpus is not None:
            values["cpus"] = cpus
        if values:
            parsed[kind] = values
    return parsed


def same_limits(desired: dict, actual: dict) -> bool:
    """Whether limits in force match the desired ones (parsed), allowing for the
    rounding of where they are enforced: a page of memory, a microsecond of CPU
    quota per 100 ms."""
    if set(desired) != set(actual):
        return False
    if abs(desired.get("memory", 0) - actual.get("memory", 0)) >= 4096:
        return False
    return abs(desired.get("cpus", 0) - actual.get("cpus", 0)) < 2e-5


def compose_resources(resources: dict | None) -> dict:
    """Resources in Compose's spelling from either shape."""
    written: dict = {}
    for kind, values in parse_resources(resources).items():
        section = {}
        if "memory" in values:
            section["memory"] = format_memory(values["memory"])
        if "cpus" in values:
            section["cpus"] = format_cpus(values["cpus"])
        written[kind] = section
    return written


def describe_resources(resources: dict | None) -> str:
    """One line for an action: "limits memory=512M cpus=0.5; reservations ..."."""
    parts = []
    for kind, values in compose_resources(resources).items():
        parts.append(
            "%s %s" % (kind, " ".join("%s=%s" % item for item in values.items()))
        )
    return "; ".join(parts) or "no limits"
