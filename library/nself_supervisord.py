#!/usr/bin/python
"""Ansible module: the environment's own supervisord."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_supervisord
short_description: Ensure an environment's own supervisord is configured and running
description:
  - Writes C(supervisord.conf) in the environment's state folder and starts supervisord
    from the same Python environment the module runs in.
  - With I(state=stopped), stops every program of the environment and then supervisord.
options:
  state_dir:
    description: The environment's state folder.
    type: path
    required: true
  env:
    description: Name of the environment, written into the config as a comment.
    type: str
    required: true
  state:
    description: Whether supervisord should run.
    type: str
    choices: [started, stopped]
    default: started
attributes:
  check_mode:
    support: full
    description: Reports whether the config would change and supervisord would start or stop.
  diff_mode:
    support: full
    description: Shows the config before and after.
"""

EXAMPLES = r"""
- name: Ensure the environment's supervisor runs
  nself_supervisord:
    state_dir: /var/lib/nself/local
    env: local
"""

RETURN = r"""
running:
  description: Whether supervisord runs after the task (or would, in check mode).
  returned: always
  type: bool
socket:
  description: Path of the supervisor control socket.
  returned: always
  type: str
actions:
  description: What was done, or would be done in check mode.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.runtime import Change, read_text, write_text
from ansible.module_utils.nself.supervisor import Supervisor, SupervisorError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state_dir=dict(type="path", required=True),
            env=dict(type="str", required=True),
            state=dict(type="str", choices=["started", "stopped"], default="started"),
        ),
        supports_check_mode=True,
    )
    sup = Supervisor(module.params["state_dir"], module.params["env"])
    change = Change()
    running = sup.is_running()
    try:
        if module.params["state"] == "stopped":
            if running:
                change.add("stop supervisord and every program")
                if not module.check_mode:
                    sup.shutdown()
                running = False
        else:
            before, after = read_text(sup.conf_path), sup.render_conf()
            if before != after:
                change.add("write %s" % sup.conf_path)
                change.add_diff(sup.conf_path, before, after)
                if not module.check_mode:
                    for folder in (sup.run_dir, sup.log_dir, sup.programs_dir):
                        os.makedirs(folder, mode=0o750, exist_ok=True)
                    write_text(sup.conf_path, after, 0o600)
            if not running:
                change.add("start supervisord")
                if not module.check_mode:
                    sup.start()
                running = True
    except SupervisorError as exc:
        module.fail_json(
            msg="supervisord for %s: %s" % (module.params["env"], exc),
            actions=change.actions,
        )
    result = dict(
        changed=change.changed,
        running=running,
        socket=sup.socket_path,
        actions=change.actions,
    )
    if module._diff and change.diffs:
        result["diff"] = change.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
