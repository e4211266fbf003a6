#!/usr/bin/python
"""Ansible module: apply an idempotent SQL file and say truthfully whether it changed anything."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_pg_sql
short_description: Apply an idempotent SQL file to a database, reporting real changes
description:
  - Runs the file in one transaction. Whether anything changed is judged by comparing the
    database's structure and row counts before and after, so a file written to be rerun
    (C(CREATE ... IF NOT EXISTS), guarded inserts) reports no change on its second run.
  - In check mode the file runs in a transaction that is rolled back, so the report says
    exactly what a real run would do and the database is left as it was.
options:
  database:
    description: Database to apply the file to.
    type: str
    required: true
  path:
    description: The SQL file, on the target.
    type: path
    required: true
extends_documentation_fragment:
  - nself_postgres_login
attributes:
  check_mode:
    support: full
    description: Runs the file in a rolled-back transaction and reports what it would change.
  diff_mode:
    support: none
    description: Changes are reported as actions (tables created, rows added).
"""

EXAMPLES = r"""
- name: Ensure the shop schema exists
  nself_pg_sql:
    database: shop
    path: /var/lib/nself/local/api/app/schema.sql
    login_port: 15432
    login_password: "{{ pg_superuser_password }}"
"""

RETURN = r"""
actions:
  description: What the file changed, or would change in check mode.
  returned: always
  type: list
  elements: str
  sample: ["create table public.orders (200000 rows)"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.postgres import (
    CONNECTION_SPEC,
    connect,
    describe_difference,
    fingerprint,
    server_down,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            database=dict(type="str", required=True),
            path=dict(type="path", required=True),
            **CONNECTION_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        with open(p["path"]) as handle:
            script = handle.read()
    except FileNotFoundError:
        if module.check_mode:
            # The file is shipped by an earlier task, which check mode did not run.
            module.exit_json(changed=True, actions=["apply %s" % p["path"]])
        module.fail_json(msg="reading SQL file %s: no such file" % p["path"])
    except OSError as exc:
        module.fail_json(msg="reading SQL file %s: %s" % (p["path"], exc))
    try:
        import psycopg
    except ImportError:
        module.fail_json(
            msg="applying %s: the Python package psycopg is missing" % p["path"]
        )
    try:
        with connect(p, p["database"], autocommit=False) as conn:
            before = fingerprint(conn)
            conn.execute(script)
            after = fingerprint(conn)
            if module.check_mode:
                conn.rollback()
            else:
                conn.commit()
    except psycopg.OperationalError as exc:
        if module.check_mode and server_down(exc):
            # A server that is not started yet (first run in check mode) would get the
            # whole file.
            module.exit_json(changed=True, actions=["apply %s" % p["path"]])
        module.fail_json(
            msg="applying %s to database %s failed: %s"
            % (p["path"], p["database"], str(exc).strip())
        )
    except psycopg.Error as exc:
        module.fail_json(
            msg="applying %s to database %s failed: %s"
            % (p["path"], p["database"], str(exc).strip())
        )
    actions = describe_difference(before, after)
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()
