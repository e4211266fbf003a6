#!/usr/bin/python
"""Ansible module: what an environment runs and whether it is healthy."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_status
short_description: Report an environment's services, replicas, health and endpoints
description:
  - Reads the services defined in the environment's state folder, asks the runtime which
    instances run, and probes each instance with the service's health check.
  - Changes nothing.
options:
  url:
    description: The environment's public address (nginx), reported as is.
    type: str
    required: true
  services:
    description: Services to report, in this order; others defined are appended.
    type: list
    elements: str
    default: [postgres, pgbouncer, redis, api, nginx]
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
- name: Read the environment's status
  nself_status:
    state_dir: /var/lib/nself/local
    env: local
    url: http://127.0.0.1:18080
"""

RETURN = r"""
status:
  description: The environment's status.
  returned: always
  type: dict
  sample:
    env: local
    runtime: process
    url: http://127.0.0.1:18080
    up: true
    services:
      - name: api
        replicas: 1
        running: 1
        healthy: true
        endpoints: ["127.0.0.1:18101"]
        instances: [{name: api_1, endpoint: 127.0.0.1:18101, state: RUNNING, pid: 4242,
                     healthy: true}]
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.health import check
from ansible.module_utils.nself.runtime import (
    ENVIRONMENT_SPEC,
    RuntimeFailure,
    defined_services,
    get_runtime,
    load_definition,
)
from ansible.module_utils.nself.scaling import desired_replicas
from ansible.module_utils.nself.supervisor import SupervisorError


def service_status(runtime, state_dir: str, name: str) -> dict:
    definition = load_definition(state_dir, name)
    instances = runtime.instances(name)
    rows = []
    for instance in instances:
        healthy = False
        if instance.running:
            healthy, _ = check(instance.endpoint, definition.health)
        rows.append(
            dict(
                name=instance.name,
                endpoint=instance.endpoint,
                state=instance.state,
                pid=instance.pid,
                healthy=healthy,
            )
        )
    replicas = (
        desired_replicas(state_dir, name, default=len(instances) or 1)
        if definition.replicable
        else 1
    )
    running = sum(1 for row in rows if row["state"] == "RUNNING")
    return dict(
        name=name,
        replicas=replicas,
        running=running,
        healthy=bool(rows) and running == replicas and all(r["healthy"] for r in rows),
        endpoints=[row["endpoint"] for row in rows],
        instances=rows,
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            **ENVIRONMENT_SPEC,
            url=dict(type="str", required=True),
            services=dict(
                type="list",
                elements="str",
                default=["postgres", "pgbouncer", "redis", "api", "nginx"],
            ),
        ),
        supports_check_mode=True,
    )
    p = module.params
    defined = defined_services(p["state_dir"])
    names = [n for n in p["services"] if n in defined]
    names += [n for n in defined if n not in names]
    status = dict(
        env=p["env"],
        runtime=p["runtime"],
        url=p["url"],
        state_dir=p["state_dir"],
        exists=os.path.isdir(p["state_dir"]),
        services=[],
    )
    try:
        runtime = get_runtime(
            p["runtime"], p["state_dir"], p["env"], p["runtime_options"]
        )
        status["services"] = [service_status(runtime, p["state_dir"], n) for n in names]
    except (RuntimeFailure, SupervisorError) as exc:
        module.fail_json(msg="reading the status of %s: %s" % (p["env"], exc))
    status["up"] = bool(status["services"]) and all(
        s["healthy"] for s in status["services"]
    )
    module.exit_json(changed=False, status=status)


if __name__ == "__main__":
    main()
