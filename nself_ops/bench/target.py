"""What the bench tasks need to know about an environment, read from its inventory.

The URL and ports come from the inventory's variables (templated by Ansible, so
overrides per host apply), the PostgreSQL superuser's password from the
environment's secrets folder, and the real rows that fill scenario
placeholders from the application's database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nself_ops.ansible import run_module

from .db import DbTarget
from .errors import BenchInputError, TargetDownError

log = logging.getLogger("nself.bench")

#: The superuser the environment's cluster is created with.
PG_SUPERUSER = "postgres"

#: How many real rows of each kind fill a scenario's placeholders.
FILL_ROWS = 1000

#: How many pending orders: a payment succeeds once per order, so a scenario
#: step that pays (``unique``) needs one for every payment it sends.
ORDER_ROWS = 4096

_VARS = (
    "{{ {'endpoints': nself_bench_endpoints | default([]),"
    " 'bind': nself_bind_address, 'ports': nself_ports,"
    " 'state_dir': nself_state_dir,"
    " 'database': postgres_database | default('shop')} }}"
)


@dataclass(frozen=True)
class EnvTarget:
    """An environment as the benchmarks see it."""

    env: str
    url: str
    endpoints: Sequence[Any]
    bind: str
    ports: dict[str, int]
    state_dir: Path
    database: str

    def db_target(self, via: str = "direct") -> DbTarget:
        """Connection to PostgreSQL itself, or to the pooler in front of it."""
        port_key = "pgbouncer" if via == "pooler" else "postgres"
        return DbTarget(
            host=self.bind,
            port=int(self.ports[port_key]),
            user=PG_SUPERUSER,
            password=self.superuser_password(),
        )

    def superuser_password(self) -> str | None:
        """The superuser's password from the secrets folder, if it is there."""
        path = self.state_dir / "secrets" / "postgres_superuser_password"
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except PermissionError:
            raise BenchInputError(
                f"cannot read {path}: run the bench task as the account that "
                "brought the environment up"
            ) from None


def read(env: str) -> EnvTarget:
    """The environment's benchmark view, from its inventory variables."""
    result = run_module(env, "ansible.builtin.debug", {"msg": _VARS})
    values = result.get("msg")
    if not isinstance(values, dict):
        raise BenchInputError(f"cannot read the inventory variables of {env}: {result}")
    ports = {k: int(v) for k, v in values["ports"].items()}
    bind = str(values["bind"])
    return EnvTarget(
        env=env,
        url=f"http://{bind}:{ports['nginx']}",
        endpoints=list(values["endpoints"]),
        bind=bind,
        ports=ports,
        state_dir=Path(values["state_dir"]),
        database=str(values["database"]),
    )


def fetch_fill(target: EnvTarget) -> dict[str, list[Any]]:
    """Real ids for scenario placeholders, from the application's database.

    ``{id}`` and ``{product_id}`` are product ids, ``{user_id}`` user ids, and
    ``{order_id}`` with ``{amount}`` a pending order and its total. Tables the
    schema lacks are left out; a placeholder that needs them is reported by
    the scenario when it is built.
    """
    import psycopg

    db = target.db_target()
    if db.password is None:
        raise TargetDownError(
            f"environment {target.env} has no database secrets in {target.state_dir}; "
            f"bring it up with: invoke up --env {target.env}"
        )
    queries = {
        "id": ("SELECT id FROM products ORDER BY random() LIMIT %s", FILL_ROWS),
        "user_id": ("SELECT id FROM users ORDER BY random() LIMIT %s", FILL_ROWS),
        "order": (
            "SELECT id AS order_id, total::text AS amount FROM orders "
            "WHERE status = 'pending' AND total > 0 ORDER BY random() LIMIT %s",
            ORDER_ROWS,
        ),
    }
    fill: dict[str, list[Any]] = {}
    try:
        with psycopg.connect(
            host=db.host,
            port=db.port,
            user=db.user,
            password=db.password,
            dbname=target.database,
            connect_timeout=5,
        ) as conn:
            for name, (query, limit) in queries.items():
                try:
                    cur = conn.execute(query, (limit,))
                except psycopg.errors.UndefinedTable:
                    conn.rollback()
                    continue
                names = [c.name for c in cur.description or []]
                rows = cur.fetchall()
                if len(names) == 1:
                    fill[name] = [r[0] for r in rows]
                else:
                    fill[name] = [dict(zip(names, r, strict=True)) for r in rows]
    except psycopg.OperationalError as exc:
        raise TargetDownError(
            f"PostgreSQL of {target.env} does not answer at {db.host}:{db.port} "
            f"({str(exc).strip().splitlines()[-1]}); is the environment up?"
        ) from None
    if "id" in fill:
        fill["product_id"] = list(fill["id"])
    log.info("fill values: %s", {k: len(v) for k, v in fill.items()})
    return fill
