#!/usr/bin/python
"""Ansible module: an application's database, its owner and its extensions."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_pg_database
short_description: Ensure a database, its owning login role and its extensions exist
description:
  - Creates the login role (or sets its password when it differs), the database owned by
    it, and the listed extensions inside the database. Identifiers are always quoted.
options:
  name:
    description: Name of the database.
    type: str
    required: true
  owner:
    description: Login role that owns the database.
    type: str
    required: true
  owner_password:
    description: Password of the owning role.
    type: str
    required: true
  extensions:
    description: Extensions to create in the database.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - nself_postgres_login
attributes:
  check_mode:
    support: full
    description: Reports the statements that would run; runs none.
  diff_mode:
    support: none
    description: The statements are returned in C(queries).
"""

EXAMPLES = r"""
- name: Ensure the shop database exists
  nself_pg_database:
    name: shop
    owner: shop
    owner_password: "{{ shop_password }}"
    extensions: [pg_stat_statements, hypopg]
    login_port: 15432
    login_password: "{{ superuser_password }}"
"""

RETURN = r"""
queries:
  description: Statements run, or that would run in check mode; passwords are masked.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.postgres import CONNECTION_SPEC, connect, server_down


def _password_matches(conn, role: str, password: str) -> bool:
    # The stored SCRAM verifier cannot be compared directly; a login attempt can.
    import psycopg

    try:
        psycopg.connect(
            host=conn.info.host,
            port=conn.info.port,
            user=role,
            password=password,
            dbname="postgres",
            connect_timeout=5,
        ).close()
        return True
    except psycopg.OperationalError:
        return False


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            owner=dict(type="str", required=True),
            owner_password=dict(type="str", required=True, no_log=True),
            extensions=dict(type="list", elements="str", default=[]),
            **CONNECTION_SPEC,
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        module.fail_json(msg="managing database %s: psycopg is missing" % p["name"])

    planned: list[tuple[str, object]] = []
    try:
        with connect(p) as conn:
            role = sql.Identifier(p["owner"])
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (p["owner"],)
            ).fetchone()
            if not exists:
                planned.append(
                    (
                        "CREATE ROLE %s LOGIN PASSWORD '********'" % p["owner"],
                        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                            role, sql.Literal(p["owner_password"])
                        ),
                    )
                )
            elif not _password_matches(conn, p["owner"], p["owner_password"]):
                planned.append(
                    (
                        "ALTER ROLE %s PASSWORD '********'" % p["owner"],
                        sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                            role, sql.Literal(p["owner_password"])
                        ),
                    )
                )
            db_exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (p["name"],)
            ).fetchone()
            if not db_exists:
                planned.append(
                    (
                        "CREATE DATABASE %s OWNER %s" % (p["name"], p["owner"]),
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(p["name"]), role
                        ),
                    )
                )
            if not module.check_mode:
                for _, statement in planned:
                    conn.execute(statement)

        missing = list(p["extensions"])
        if db_exists or not module.check_mode:
            with connect(p, p["name"]) as conn:
                present = {
                    row[0] for row in conn.execute("SELECT extname FROM pg_extension")
                }
                missing = [e for e in p["extensions"] if e not in present]
                if not module.check_mode:
                    for extension in missing:
                        conn.execute(
                            sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                                sql.Identifier(extension)
                            )
                        )
        for extension in missing:
            planned.append(("CREATE EXTENSION %s" % extension, None))
    except psycopg.OperationalError as exc:
        if not (module.check_mode and server_down(exc)):
            module.fail_json(
                msg="managing database %s on port %s failed: %s"
                % (p["name"], p["login_port"], str(exc).strip())
            )
        # The server is not started yet (first run in check mode): all would be created.
        planned = [
            ("CREATE ROLE %s LOGIN PASSWORD '********'" % p["owner"], None),
            ("CREATE DATABASE %s OWNER %s" % (p["name"], p["owner"]), None),
        ] + [("CREATE EXTENSION %s" % e, None) for e in p["extensions"]]
    except psycopg.Error as exc:
        module.fail_json(
            msg="managing database %s on port %s failed: %s"
            % (p["name"], p["login_port"], str(exc).strip())
        )
    module.exit_json(changed=bool(planned), queries=[text for text, _ in planned])


if __name__ == "__main__":
    main()
