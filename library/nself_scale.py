#!/usr/bin/python
"""Ansible module: change how many replicas of a service run, or with what resources."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_scale
short_description: Scale a service of an environment out, in, up or down
description:
  - Records the desired scaling in the environment's C(scaling.yaml) (shaped like a
    Compose C(deploy:) section) and converges the environment's runtime to it.
  - Every value is checked before anything is touched; bad input fails with a message
    naming the value and the valid ones, and leaves C(scaling.yaml) and the running
    services as they were.
  - I(action=grow) sets the replica count and starts any new replicas, waiting until
    they are healthy; it stops none. I(action=shrink) stops the replicas beyond the
    count. A playbook puts the load balancer's update between the two, so that new
    replicas are served only when healthy and old ones leave it before they stop.
  - I(action=resources) sets memory and CPU limits (reservations are half of them) and
    applies them to every instance; where the host cannot enforce them, the task says
    so in a warning instead of pretending.
  - I(action=plan) computes the limits I(action=resources) would set, and what they
    mean for PostgreSQL's memory settings, changing nothing; a playbook uses it to
    retune PostgreSQL before its memory shrinks.
  - Services listed in I(load_balanced) keep at least one replica, as the load
    balancer in front of them needs a server to send requests to.
options:
  action:
    description: What to change.
    type: str
    choices: [grow, shrink, plan, resources]
    required: true
  service:
    description: The service to scale.
    type: str
    required: true
  replicas:
    description: The replica count wanted; with I(action=grow) or I(action=shrink).
    type: int
  delta:
    description: Replicas to add (or remove, negative) when I(replicas) is not given.
    type: int
    default: 0
  ceiling:
    description: The most replicas the service may have.
    type: int
    default: 10
  load_balanced:
    description: Services behind the load balancer, which need at least one replica.
    type: list
    elements: str
    default: []
  memory:
    description: Memory limit, a size such as C(512M) or C(4G).
    type: str
  cpus:
    description: CPU limit in CPUs, such as C(0.5) or C(2).
    type: str
  step:
    description:
      - With I(action=resources) and no I(memory)/I(cpus), double (C(up)) or halve
        (C(down)) the current limits, within I(memory_bounds) and I(cpu_bounds).
    type: str
    choices: [up, down]
  default_memory:
    description: The memory a service is taken to have when it has no limit yet.
    type: str
    default: 512M
  default_cpus:
    description: The CPUs a service is taken to have when it has no limit yet.
    type: str
    default: "0.5"
  memory_bounds:
    description: Smallest and largest memory limit a step may reach.
    type: list
    elements: str
    default: [64M, 16G]
  cpu_bounds:
    description: Smallest and largest CPU limit a step may reach.
    type: list
    elements: str
    default: ["0.1", "8"]
  max_connections:
    description: PostgreSQL's connection limit, used to compute its work memory.
    type: int
    default: 100
  single_instance:
    description:
      - Services that cannot have replicas when the environment stores no definition
        of them (a Compose or Swarm stack brought up outside the toolkit).
    type: list
    elements: str
    default: [postgres, redis]
  wait_timeout:
    description: Seconds to wait for each new replica to become healthy.
    type: int
    default: 60
extends_documentation_fragment:
  - nself_environment
attributes:
  check_mode:
    support: full
    description: Validates and reports the scaling.yaml diff and planned actions only.
  diff_mode:
    support: full
    description: Shows scaling.yaml and each program or limits file before and after.
"""

EXAMPLES = r"""
- name: Ensure three api replicas run
  nself_scale:
    action: grow
    service: api
    replicas: 3
    state_dir: /var/lib/nself/local
    env: local

- name: Ensure PostgreSQL may use 4 GB
  nself_scale:
    action: resources
    service: postgres
    memory: 4G
    state_dir: /var/lib/nself/local
    env: local
"""

RETURN = r"""
replicas:
  description: The replica count converged to (grow and shrink).
  returned: when action is grow or shrink
  type: int
endpoints:
  description: The endpoints the load balancer must list for that count.
  returned: when action is grow, or resources for a service in I(load_balanced)
  type: list
  elements: str
resources:
  description: The limits and reservations set, as scaling.yaml spells them.
  returned: when action is plan or resources
  type: dict
  sample: {limits: {memory: 4G, cpus: "2"}, reservations: {memory: 2G, cpus: "1"}}
lowers_memory:
  description: Whether the new memory limit is below the one recorded before.
  returned: when action is plan or resources
  type: bool
enforced:
  description: Whether the host enforces the limits.
  returned: when action is resources
  type: bool
postgres_settings:
  description: PostgreSQL memory settings computed from the memory limit.
  returned: when action is plan or resources and the service is postgres with memory
  type: dict
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
"""

import math
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself import scaling
from ansible.module_utils.nself.pgtune import tune
from ansible.module_utils.nself.runtime import (
    ENVIRONMENT_SPEC,
    Change,
    RuntimeFailure,
    defined_services,
    get_runtime,
    load_definition,
    read_text,
    write_text,
)
from ansible.module_utils.nself.supervisor import SupervisorError


class BadInput(Exception):
    """A value the operator gave is not acceptable; nothing was changed."""


# The smallest limits worth setting: a program needs a few megabytes to start at all,
# and the kernel's scheduler takes no CPU quota below a millisecond per 100 ms.
MIN_MEMORY = 6 * 1024**2
MIN_CPUS = 0.01


def _memory(value: str, what: str) -> int:
    try:
        parsed = scaling.parse_memory(value)
    except RuntimeFailure:
        parsed = None
    if parsed is None or parsed < MIN_MEMORY:
        raise BadInput(
            "invalid %s %r; use a size of at least 6M with an optional unit K, M, G "
            "or T (for example 512M or 4G)" % (what, value)
        )
    return parsed


def _cpus(value: str, what: str) -> float:
    try:
        parsed = float(value)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or not math.isfinite(parsed) or parsed < MIN_CPUS:
        raise BadInput(
            "invalid %s %r; use a number of CPUs of at least 0.01 (for example 0.5 "
            "or 2)" % (what, value)
        )
    return parsed


def check_service(p: dict, runtime) -> None:
    services = defined_services(p["state_dir"])
    if p["runtime"] == "process" and p["service"] not in services:
        raise BadInput(
            "unknown service %r in %s; valid services: %s"
            % (p["service"], p["env"], ", ".join(services) or "none (run invoke up)")
        )


def target_replicas(p: dict, current: int) -> int:
    definition = load_definition(p["state_dir"], p["service"])
    # Without a stored definition (a Compose or Swarm stack the toolkit did not bring
    # up), the services that hold state are the ones that cannot be copied.
    single = (
        not definition.replicable
        if definition is not None
        else p["service"] in p["single_instance"]
    )
    if single:
        replicable = [
            name
            for name in defined_services(p["state_dir"])
            if load_definition(p["state_dir"], name).replicable
        ] or ["any but " + ", ".join(p["single_instance"])]
        raise BadInput(
            "service %r runs as a single instance and cannot have replicas; "
            "services with replicas: %s" % (p["service"], ", ".join(replicable))
        )
    wanted = p["replicas"] if p["replicas"] is not None else current + p["delta"]
    lowest = 1 if p["service"] in p["load_balanced"] else 0
    if not lowest <= wanted <= p["ceiling"]:
        why = " (it is behind the load balancer)" if lowest else ""
        raise BadInput(
            "invalid replica count %d for %s%s; valid counts: %d to %d"
            % (wanted, p["service"], why, lowest, p["ceiling"])
        )
    return wanted


def write_desired(path: str, data: dict, check: bool, change: Change) -> None:
    before, after = read_text(path), scaling.dump(data)
    if before != after:
        change.add("record the desired scaling in %s" % path)
        change.add_diff(path, before, after)
        if not check:
            write_text(path, after)


def plan_resources(p: dict) -> tuple[dict, list[str]]:
    """Limits and reservations from the options; notes for values held at a bound."""
    current = scaling.parse_resources(
        scaling.desired_resources(p["state_dir"], p["service"])
    ).get("limits", {})
    notes = []
    memory = _memory(p["memory"], "memory") if p["memory"] else None
    cpus = _cpus(p["cpus"], "cpu") if p["cpus"] else None
    if memory is None and cpus is None:
        if not p["step"]:
            raise BadInput("give --memory, --cpu or both")
        low_m, high_m = (_memory(v, "memory bound") for v in p["memory_bounds"])
        low_c, high_c = (_cpus(v, "cpu bound") for v in p["cpu_bounds"])
        base_m = current.get("memory") or _memory(p["default_memory"], "memory")
        base_c = current.get("cpus") or _cpus(p["default_cpus"], "cpu")
        factor = 2 if p["step"] == "up" else 0.5
        if p["runtime"] == "process":
            # Processes share this host's CPUs: a step stops at their number.
            high_c = min(high_c, float(os.cpu_count() or 1))
        memory = int(min(high_m, max(low_m, base_m * factor)))
        cpus = round(min(high_c, max(low_c, base_c * factor)), 3)
        if memory == base_m:
            notes.append(
                "memory is already at its bound (%s to %s)" % tuple(p["memory_bounds"])
            )
        if cpus == base_c:
            notes.append("cpus are already at their bound (%g to %g)" % (low_c, high_c))
    else:
        memory = memory or current.get("memory")
        cpus = cpus or current.get("cpus")
        host_cpus = os.cpu_count() or 1
        if p["runtime"] == "process" and p["cpus"] and cpus > host_cpus:
            raise BadInput(
                "invalid cpu %s; this host has %d CPUs, so valid values are from "
                "0.01 to %d" % (p["cpus"], host_cpus, host_cpus)
            )
    limits, reservations = {}, {}
    if memory:
        limits["memory"] = memory
        reservations["memory"] = memory // 2
    if cpus:
        limits["cpus"] = cpus
        reservations["cpus"] = round(cpus / 2, 3)
    return {"limits": limits, "reservations": reservations}, notes


def current_replicas(p: dict, runtime) -> int:
    """The recorded replica count, or what runs where none is recorded yet."""
    return scaling.desired_replicas(
        p["state_dir"], p["service"], default=len(runtime.instances(p["service"]))
    )


def scale_replicas(p: dict, runtime, check: bool, change: Change, result: dict):
    """grow: record the count and start what is missing; shrink: stop the rest."""
    wanted = target_replicas(p, current_replicas(p, runtime))
    result["replicas"] = wanted
    if p["action"] == "shrink":
        change.merge(runtime.shrink(p["service"], wanted, check))
        return
    path = scaling.scaling_path(p["state_dir"])
    desired = scaling.with_replicas(scaling.load(p["state_dir"]), p["service"], wanted)
    write_desired(path, desired, check, change)
    change.merge(runtime.grow(p["service"], wanted, check, p["wait_timeout"]))
    result["endpoints"] = runtime.planned_endpoints(p["service"], wanted)


def scale_resources(module, runtime, check: bool, change: Change, result: dict):
    """plan: the limits and what they mean; resources: record and apply them too."""
    p = module.params
    resources, notes = plan_resources(p)
    for note in notes:
        module.warn("%s: %s" % (p["service"], note))
    result["resources"] = scaling.compose_resources(resources)
    before = scaling.parse_resources(
        scaling.desired_resources(p["state_dir"], p["service"])
    ).get("limits", {})
    memory = resources["limits"].get("memory")
    result["lowers_memory"] = bool(
        memory and before.get("memory") and memory < before["memory"]
    )
    if p["service"] == "postgres" and memory:
        result["postgres_settings"] = tune(memory, p["max_connections"])
    if p["action"] == "plan":
        return
    path = scaling.scaling_path(p["state_dir"])
    desired = scaling.with_resources(
        scaling.load(p["state_dir"]), p["service"], resources
    )
    write_desired(path, desired, check, change)
    change.merge(
        runtime.set_resources(p["service"], resources, check, p["wait_timeout"])
    )
    reason = runtime.enforcement()
    if reason:
        module.warn(
            "the limits of %s are recorded in scaling.yaml but not enforced: %s"
            % (p["service"], reason)
        )
    result["enforced"] = reason is None
    if p["service"] in p["load_balanced"]:
        # New limits can replace containers (a Swarm task gets a new name), so the
        # load balancer's list is given again.
        result["endpoints"] = runtime.planned_endpoints(
            p["service"], current_replicas(p, runtime)
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            action=dict(
                type="str",
                choices=["grow", "shrink", "plan", "resources"],
                required=True,
            ),
            service=dict(type="str", required=True),
            **ENVIRONMENT_SPEC,
            replicas=dict(type="int"),
            delta=dict(type="int", default=0),
            ceiling=dict(type="int", default=10),
            load_balanced=dict(type="list", elements="str", default=[]),
            memory=dict(type="str"),
            cpus=dict(type="str"),
            step=dict(type="str", choices=["up", "down"]),
            default_memory=dict(type="str", default="512M"),
            default_cpus=dict(type="str", default="0.5"),
            memory_bounds=dict(type="list", elements="str", default=["64M", "16G"]),
            cpu_bounds=dict(type="list", elements="str", default=["0.1", "8"]),
            max_connections=dict(type="int", default=100),
            single_instance=dict(
                type="list", elements="str", default=["postgres", "redis"]
            ),
            wait_timeout=dict(type="int", default=60),
        ),
        mutually_exclusive=[
            ("replicas", "delta"),
            ("step", "memory"),
            ("step", "cpus"),
        ],
        supports_check_mode=True,
    )
    p = module.params
    check = module.check_mode
    change = Change()
    result: dict = {}
    try:
        runtime = get_runtime(
            p["runtime"], p["state_dir"], p["env"], p["runtime_options"]
        )
        check_service(p, runtime)
        if p["action"] in ("grow", "shrink"):
            scale_replicas(p, runtime, check, change, result)
        else:
            scale_resources(module, runtime, check, change, result)
    except BadInput as exc:
        module.fail_json(msg="scaling %s: %s" % (p["service"], exc), **result)
    except (RuntimeFailure, SupervisorError, OSError) as exc:
        module.fail_json(
            msg="scaling %s in %s failed: %s" % (p["service"], p["env"], exc),
            actions=change.actions,
        )
    result.update(changed=change.changed, actions=change.actions)
    if module._diff and change.diffs:
        result["diff"] = change.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
