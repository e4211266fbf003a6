"""PostgreSQL helpers the modules share: connecting, and fingerprints of a database."""

from __future__ import annotations

import hashlib
import time

# Options every module that connects to PostgreSQL takes; documented in each module.
CONNECTION_SPEC = dict(
    login_host=dict(type="str", default="127.0.0.1"),
    login_port=dict(type="int", required=True),
    login_user=dict(type="str", default="postgres"),
    login_password=dict(type="str", required=True, no_log=True),
)


def connect(
    params: dict, dbname: str = "postgres", autocommit: bool = True, wait: float = 30
):
    """A psycopg connection from the module's login_* options.

    A server that has just started listens before it accepts sessions; such refusals
    are retried for up to `wait` seconds, any other error is raised at once.
    """
    import psycopg

    deadline = time.monotonic() + wait
    while True:
        try:
            return psycopg.connect(
                host=params["login_host"],
                port=params["login_port"],
                user=params["login_user"],
                password=params["login_password"],
                dbname=dbname,
                autocommit=autocommit,
                connect_timeout=10,
            )
        except psycopg.OperationalError as exc:
            starting = "starting up" in str(exc) or "shutting down" in str(exc)
            if not starting or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def server_down(exc: Exception) -> bool:
    """Whether a connection error means nothing listens (as before a first start)."""
    text = str(exc)
    return "Connection refused" in text or "No such file or directory" in text


def fingerprint(conn) -> dict:
    """What a SQL file can change in a database: its structure and its row counts.

    Two fingerprints that are equal mean the file changed nothing a user can see.
    """
    from psycopg import sql

    columns = conn.execute(
        """
        SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        ORDER BY 1, 3
        """
    ).fetchall()
    structure = hashlib.sha256(repr(columns).encode()).hexdigest()
    tables = conn.execute(
        """
        SELECT n.nspname, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        ORDER BY 1, 2
        """
    ).fetchall()
    rows = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        rows["%s.%s" % (schema, table)] = conn.execute(query).fetchone()[0]
    return {"structure": structure, "rows": rows}


def describe_difference(before: dict, after: dict) -> list[str]:
    """Plain sentences for what changed between two fingerprints."""
    actions = []
    if before["structure"] != after["structure"]:
        actions.append("change the database structure")
    for table, count in sorted(after["rows"].items()):
        old = before["rows"].get(table)
        if old is None:
            actions.append("create table %s (%d rows)" % (table, count))
        elif old != count:
            actions.append("%s: %d → %d rows" % (table, old, count))
    return actions
