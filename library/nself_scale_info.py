#!/usr/bin/python
"""Ansible module: desired against actual scaling of an environment's services."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_scale_info
short_description: Report each service's desired and running replicas, limits and usage
description:
  - Compares the environment's C(scaling.yaml) with what the runtime actually runs, and
    samples each running instance's CPU use (over half a second) and memory.
  - Reads back the limits each running instance really has where they are enforced
    (its cgroups, or the engine's view of its container) and says per service whether
    they are the desired ones.
  - For PostgreSQL with a memory limit, also returns the memory settings computed from it.
  - Changes nothing.
options:
  services:
    description: Services to report; all defined ones when empty.
    type: list
    elements: str
    default: []
  usage:
    description: Whether to sample CPU and memory use.
    type: bool
    default: true
  max_connections:
    description: PostgreSQL's connection limit, used to compute its work memory.
    type: int
    default: 100
extends_documentation_fragment:
  - nself_environment
attributes:
  check_mode:
    support: full
    description: The module only reads, so check mode behaves as a real run.
  diff_mode:
    support: none
    description: Nothing changes.
"""

EXAMPLES = r"""
- name: Read how the api is scaled
  nself_scale_info:
    state_dir: /var/lib/nself/local
    env: local
    services: [api]
"""

RETURN = r"""
services:
  description: One entry per service.
  returned: always
  type: list
  elements: dict
  sample:
    - name: api
      replicas: 3
      running: 3
      resources: {limits: {memory: 512M, cpus: "0.5"}, reservations: {memory: 256M}}
      autoscale: null
      limits_in_force: true
      instances:
        - {name: api_1, endpoint: "127.0.0.1:18101", state: RUNNING, cpu_percent: 1.5,
           memory_bytes: 73400320, limits: {memory: 512M, cpus: "0.5"},
           limits_match: true}
enforcement:
  description: Why limits are not enforced on this host, or null when they are.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself import scaling
from ansible.module_utils.nself.pgtune import tune
from ansible.module_utils.nself.runtime import (
    ENVIRONMENT_SPEC,
    RuntimeFailure,
    defined_services,
    get_runtime,
    load_definition,
)
from ansible.module_utils.nself.supervisor import SupervisorError

ORDER = ("postgres", "pgbouncer", "redis", "api", "nginx")


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            **ENVIRONMENT_SPEC,
            services=dict(type="list", elements="str", default=[]),
            usage=dict(type="bool", default=True),
            max_connections=dict(type="int", default=100),
        ),
        supports_check_mode=True,
    )
    p = module.params
    desired = scaling.load(p["state_dir"])["services"]
    names = p["services"] or sorted(
        set(defined_services(p["state_dir"])) | set(desired),
        key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n),
    )
    try:
        runtime = get_runtime(
            p["runtime"], p["state_dir"], p["env"], p["runtime_options"]
        )
        entries, everything = [], []
        for name in names:
            instances = runtime.instances(name)
            everything += instances
            definition = load_definition(p["state_dir"], name)
            single = definition is not None and not definition.replicable
            entry = desired.get(name, {})
            deploy = entry.get("deploy", {})
            resources = deploy.get("resources") or {}
            entries.append(
                dict(
                    name=name,
                    replicas=1
                    if single
                    else int(deploy.get("replicas", len(instances))),
                    running=sum(1 for i in instances if i.running),
                    replicable=not single,
                    resources=resources,
                    autoscale=entry.get("autoscale"),
                    instances=[
                        dict(name=i.name, endpoint=i.endpoint, state=i.state, pid=i.pid)
                        for i in instances
                    ],
                )
            )
            memory = scaling.parse_resources(resources).get("limits", {}).get("memory")
            if name == "postgres" and memory:
                entries[-1]["postgres_settings"] = tune(memory, p["max_connections"])
        usage = runtime.usage(everything) if p["usage"] else {}
        for entry in entries:
            for instance in entry["instances"]:
                figures = usage.get(instance["name"], {})
                instance["cpu_percent"] = figures.get("cpu_percent")
                instance["memory_bytes"] = figures.get("memory_bytes")
        enforcement = runtime.enforcement()
        if not enforcement:
            in_force = runtime.limits_in_force(everything)
            for entry in entries:
                want = scaling.parse_resources(entry["resources"]).get("limits", {})
                running = [i for i in entry["instances"] if i["name"] in in_force]
                for instance in running:
                    have = in_force[instance["name"]]
                    written = scaling.compose_resources({"limits": have})
                    instance["limits"] = written.get("limits", {})
                    instance["limits_match"] = scaling.same_limits(want, have)
                entry["limits_in_force"] = all(i["limits_match"] for i in running)
    except (RuntimeFailure, SupervisorError, OSError) as exc:
        module.fail_json(msg="reading the scaling of %s: %s" % (p["env"], exc))
    module.exit_json(changed=False, services=entries, enforcement=enforcement)


if __name__ == "__main__":
    main()
