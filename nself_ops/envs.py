"""Environments: which exist, where their state lives, and the values commands check."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from nself_ops import PROJECT_DIR

# NSELF_INVENTORIES points commands at other inventories (the Docker tests' own).
INVENTORIES = Path(os.environ.get("NSELF_INVENTORIES") or PROJECT_DIR / "inventories")

# Services every environment has, in the order status lists them.
SERVICES = ("postgres", "pgbouncer", "redis", "api", "nginx")


class InputError(ValueError):
    """Bad input from the command line; the message names the value and valid ones."""


def environments() -> list[str]:
    """Every environment, one per inventory folder."""
    return sorted(p.name for p in INVENTORIES.iterdir() if (p / "hosts.yml").exists())


def resolve_env(env: str | None) -> str:
    """The environment a command acts on: --env, else NSELF_ENV, else local."""
    name = env or os.environ.get("NSELF_ENV") or "local"
    valid = environments()
    if name not in valid:
        raise InputError(
            "unknown environment %r; valid environments: %s" % (name, ", ".join(valid))
        )
    return name


def check_choice(what: str, value: str, valid) -> str:
    if value not in valid:
        raise InputError(
            "unknown %s %r; valid %ss: %s" % (what, value, what, ", ".join(valid))
        )
    return value


def state_root() -> Path:
    """Where environments keep state: NSELF_STATE_ROOT, else a per-user default."""
    if os.environ.get("NSELF_STATE_ROOT"):
        return Path(os.environ["NSELF_STATE_ROOT"])
    if os.geteuid() == 0:
        return Path("/var/lib/nself")
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "nself"


def service_user() -> str:
    """The account services run as: the invoking one, or `nself` for root."""
    if os.environ.get("NSELF_SERVICE_USER"):
        return os.environ["NSELF_SERVICE_USER"]
    return "nself" if os.geteuid() == 0 else getpass.getuser()


def state_dir(env: str) -> Path:
    return state_root() / env
