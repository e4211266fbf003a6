#!/usr/bin/python
"""Ansible module: make a running PostgreSQL take up its changed settings."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_pg_settings
short_description: Reload PostgreSQL's settings, restarting only when a setting needs it
description:
  - Asks the server to reload its config and waits until it has. Settings that only take
    effect at server start (such as C(shared_buffers)) then show as pending a restart;
    only in that case is the server restarted, and the task waits until it accepts
    connections again.
  - Does nothing when PostgreSQL does not run; it reads its settings when it starts.
options:
  state_dir:
    description: The environment's state folder.
    type: path
    required: true
  program:
    description: The supervisor program that runs PostgreSQL.
    type: str
    default: postgres
  config:
    description:
      - The config files whose change the task answers. When the program started after
        they last changed, it already runs with them and nothing is done.
    type: list
    elements: path
    default: []
  wait_timeout:
    description: Seconds to wait for a restarted server.
    type: int
    default: 60
extends_documentation_fragment:
  - nself_postgres_login
attributes:
  check_mode:
    support: full
    description: Reports that the server would reload; changes nothing.
  diff_mode:
    support: none
    description: The settings file's diff is shown by the task that writes it.
"""

EXAMPLES = r"""
- name: Apply the changed PostgreSQL settings
  nself_pg_settings:
    state_dir: /var/lib/nself/local
    login_port: 15432
    login_password: "{{ superuser_password }}"
"""

RETURN = r"""
reloaded:
  description: Whether the server reloaded its settings.
  returned: always
  type: bool
restarted_for:
  description: Settings that needed a restart, which was done.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.postgres import CONNECTION_SPEC, connect
from ansible.module_utils.nself.supervisor import Supervisor, SupervisorError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state_dir=dict(type="path", required=True),
            config=dict(type="list", elements="path", default=[]),
            program=dict(type="str", default="postgres"),
            wait_timeout=dict(type="int", default=60),
            **CONNECTION_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    sup = Supervisor(p["state_dir"])
    if not sup.runs_older_than(p["program"], p["config"]):
        module.exit_json(changed=False, reloaded=False, restarted_for=[])
    if module.check_mode:
        module.exit_json(changed=True, reloaded=True, restarted_for=[])
    import psycopg

    try:
        with connect(p) as conn:
            loaded = conn.execute("SELECT pg_conf_load_time()").fetchone()[0]
            conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                now = conn.execute("SELECT pg_conf_load_time()").fetchone()[0]
                if now != loaded:
                    break
                time.sleep(0.05)
            pending = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM pg_settings WHERE pending_restart ORDER BY name"
                )
            ]
            # A setting that needs a restart shows in pg_file_settings as "could not be
            # applied"; that is the pending restart handled below, not an error.
            errors = [
                (name, error)
                for name, error in conn.execute(
                    "SELECT name, error FROM pg_file_settings WHERE error IS NOT NULL"
                )
                if not (name in pending and error == "setting could not be applied")
            ]
    except psycopg.Error as exc:
        module.fail_json(msg="reloading PostgreSQL settings failed: %s" % exc)
    if errors:
        module.fail_json(
            msg="PostgreSQL rejected settings: %s"
            % "; ".join("%s (%s)" % (name, error) for name, error in errors)
        )
    if pending:
        try:
            sup.stop_program(p["program"])
            sup.start_program(p["program"])
        except SupervisorError as exc:
            module.fail_json(msg="restarting PostgreSQL for %s: %s" % (pending, exc))
        try:
            connect(p, wait=p["wait_timeout"]).close()
        except psycopg.Error as exc:
            module.fail_json(msg="PostgreSQL did not come back after restart: %s" % exc)
    module.exit_json(changed=True, reloaded=True, restarted_for=pending)


if __name__ == "__main__":
    main()
