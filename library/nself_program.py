#!/usr/bin/python
"""Ansible module: restart or signal one program of an environment."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_program
short_description: Restart an instance of an environment, or send it a signal
description:
  - Used by handlers, after a config file changed, to make a running program read it.
  - Does nothing when the program does not run (it reads its config when it starts).
options:
  name:
    description: The instance (supervisor program) name, such as C(postgres) or C(api_2).
    type: str
    required: true
  state_dir:
    description: The environment's state folder.
    type: path
    required: true
  state:
    description: C(restarted) stops and starts it; C(signaled) sends I(signal).
    type: str
    choices: [restarted, signaled]
    required: true
  config:
    description:
      - The config files whose change the task answers. When the program started after
        they last changed, it already runs with them and nothing is done.
    type: list
    elements: path
    default: []
  signal:
    description: Signal sent with I(state=signaled).
    type: str
    default: HUP
    choices: [HUP, USR1, USR2, TERM, INT, QUIT]
attributes:
  check_mode:
    support: full
    description: Reports the restart or signal that would happen.
  diff_mode:
    support: none
    description: Nothing to show.
"""

EXAMPLES = r"""
- name: Reload PostgreSQL's config
  nself_program:
    name: postgres
    state_dir: /var/lib/nself/local
    state: signaled
    signal: HUP
"""

RETURN = r"""
was_running:
  description: Whether the program ran when the task started.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.supervisor import Supervisor, SupervisorError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state_dir=dict(type="path", required=True),
            config=dict(type="list", elements="path", default=[]),
            state=dict(type="str", choices=["restarted", "signaled"], required=True),
            signal=dict(
                type="str",
                default="HUP",
                choices=["HUP", "USR1", "USR2", "TERM", "INT", "QUIT"],
            ),
        ),
        supports_check_mode=True,
    )
    p = module.params
    sup = Supervisor(p["state_dir"])
    running = sup.runs_older_than(p["name"], p["config"])
    if not running or module.check_mode:
        module.exit_json(changed=running, was_running=running)
    try:
        if p["state"] == "restarted":
            sup.stop_program(p["name"])
            sup.start_program(p["name"])
        else:
            sup.signal(p["name"], p["signal"])
    except SupervisorError as exc:
        module.fail_json(msg="%s %s: %s" % (p["state"], p["name"], exc))
    module.exit_json(changed=True, was_running=True)


if __name__ == "__main__":
    main()
