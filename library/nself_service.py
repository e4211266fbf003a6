#!/usr/bin/python
"""Ansible module: define a service and converge it to its replicas."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_service
short_description: Define a service of an environment and make its replicas run
description:
  - Stores the service's definition (command, ports, environment, health check) in the
    environment's state folder and converges the environment's runtime to it.
  - The number of replicas is taken from I(replicas), else from the environment's
    C(scaling.yaml), else 1; so bringing an environment up again keeps what was scaled.
  - New replicas are started and waited for until healthy; a replica whose settings
    changed is replaced one at a time, so a replicated service keeps answering.
options:
  name:
    description: Name of the service (C(api), C(postgres), ...).
    type: str
    required: true
  command:
    description:
      - The program and its arguments, never passed through a shell.
      - C({port}), C({instance}) and C({state_dir}) are replaced per instance.
    type: list
    elements: str
    required: true
  replicable:
    description: Whether the service may run several replicas on consecutive ports.
    type: bool
    default: false
  port:
    description: Port of a single-instance service.
    type: int
  port_base:
    description: Replica N of a replicable service listens on I(port_base) + N.
    type: int
  bind_address:
    description: Address the service listens on.
    type: str
    default: 127.0.0.1
  environment:
    description: Environment variables of the program; placeholders as in I(command).
    type: dict
    default: {}
  user:
    description: Account the program runs as.
    type: str
  directory:
    description: Working directory of the program.
    type: path
  stopsignal:
    description: Signal that stops the program gracefully.
    type: str
    default: TERM
    choices: [TERM, INT, QUIT, HUP, KILL, USR1, USR2]
  stopwaitsecs:
    description: Seconds to wait after the stop signal before killing.
    type: int
    default: 30
  health:
    description:
      - "How to tell an instance is healthy: C({type: tcp}) or C({type: http, path: /x})."
    type: dict
    default: {type: tcp}
  replicas:
    description: Number of replicas wanted; see the description for the default.
    type: int
  wait_timeout:
    description: Seconds to wait for each started instance to become healthy.
    type: int
    default: 60
extends_documentation_fragment:
  - nself_environment
attributes:
  check_mode:
    support: full
    description: Reports the files that would change and the instances that would start.
  diff_mode:
    support: full
    description: Shows the definition and each program file before and after.
"""

EXAMPLES = r"""
- name: Ensure the api runs its replicas
  nself_service:
    name: api
    state_dir: /var/lib/nself/local
    env: local
    command: [/var/lib/nself/local/api/venv/bin/gunicorn, --config, gunicorn.conf.py]
    replicable: true
    port_base: 18100
    environment:
      NSELF_API_BIND: "127.0.0.1:{port}"
    health: {type: http, path: /api/health}
"""

RETURN = r"""
replicas:
  description: The number of replicas converged to.
  returned: always
  type: int
endpoints:
  description: Address and port of every instance, in order.
  returned: always
  type: list
  elements: str
  sample: ["127.0.0.1:18101", "127.0.0.1:18102"]
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.runtime import (
    ENVIRONMENT_SPEC,
    RuntimeFailure,
    ServiceDefinition,
    get_runtime,
)
from ansible.module_utils.nself.scaling import desired_replicas
from ansible.module_utils.nself.supervisor import SupervisorError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            **ENVIRONMENT_SPEC,
            command=dict(type="list", elements="str", required=True),
            replicable=dict(type="bool", default=False),
            port=dict(type="int"),
            port_base=dict(type="int"),
            bind_address=dict(type="str", default="127.0.0.1"),
            environment=dict(type="dict", default={}),
            user=dict(type="str"),
            directory=dict(type="path"),
            stopsignal=dict(
                type="str",
                default="TERM",
                choices=["TERM", "INT", "QUIT", "HUP", "KILL", "USR1", "USR2"],
            ),
            stopwaitsecs=dict(type="int", default=30),
            health=dict(type="dict", default={"type": "tcp"}),
            replicas=dict(type="int"),
            wait_timeout=dict(type="int", default=60),
        ),
        required_if=[
            ("replicable", True, ["port_base"]),
            ("replicable", False, ["port"]),
        ],
        supports_check_mode=True,
    )
    p = module.params
    definition = ServiceDefinition(
        name=p["name"],
        command=p["command"],
        replicable=p["replicable"],
        port=p["port"],
        port_base=p["port_base"],
        bind_address=p["bind_address"],
        env={k: str(v) for k, v in p["environment"].items()},
        user=p["user"],
        directory=p["directory"],
        stopsignal=p["stopsignal"],
        stopwaitsecs=p["stopwaitsecs"],
        health=p["health"],
    )
    replicas = p["replicas"]
    if replicas is None:
        replicas = desired_replicas(p["state_dir"], p["name"]) if p["replicable"] else 1
    if replicas < 1:
        module.fail_json(
            msg="converging service %s: replicas must be at least 1, got %d"
            % (p["name"], replicas)
        )
    try:
        runtime = get_runtime(
            p["runtime"], p["state_dir"], p["env"], p["runtime_options"]
        )
        change = runtime.define(definition, module.check_mode)
        change.merge(
            runtime.converge(
                p["name"],
                replicas,
                module.check_mode,
                p["wait_timeout"],
                definition=definition,
            )
        )
    except (RuntimeFailure, SupervisorError, OSError) as exc:
        module.fail_json(msg="converging service %s: %s" % (p["name"], exc))
    result = dict(
        changed=change.changed,
        replicas=replicas,
        endpoints=[
            definition.endpoint_of(i) for i in definition.instance_names(replicas)
        ],
        actions=change.actions,
    )
    if module._diff and change.diffs:
        result["diff"] = change.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
