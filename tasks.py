"""Every nself-ops command, as an Invoke task.

Run `invoke --list` for the list, `invoke --help TASK` for a task's flags. The same
tasks answer to the nself grammar: `nself scale out api --replicas 3` runs `scale-out`.
Each task checks its input, then runs its playbook (playbooks/<task>.yml) or reads the
environment through a module; `--dry-run` runs the playbook in check and diff mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from invoke import Exit, task

from nself_ops import status as status_view
from nself_ops.ansible import AnsibleFailure, run_playbook
from nself_ops.envs import SERVICES, InputError, check_choice, resolve_env

ENV_HELP = "Environment to act on (local, staging, prod); default NSELF_ENV or local."
DRY_RUN_HELP = "Show what would change (check and diff mode) and change nothing."
FORMAT_HELP = "Output format: table or json."


def _env(env: str | None) -> str:
    try:
        return resolve_env(env)
    except InputError as exc:
        raise Exit("Error: %s" % exc, code=2) from None


def _choice(what: str, value: str, valid) -> str:
    try:
        return check_choice(what, value, valid)
    except InputError as exc:
        raise Exit("Error: %s" % exc, code=2) from None


def _play(env: str, playbook: str, extra_vars=None, dry_run: bool = False) -> None:
    """Run a playbook; its output, recap included, goes to the terminal."""
    result = run_playbook(env, playbook, extra_vars=extra_vars, dry_run=dry_run)
    if result.returncode != 0:
        raise Exit(
            "Error: playbook %s failed on %s (exit %d); see the output above"
            % (playbook, env, result.returncode),
            code=result.returncode,
        )


def _status(env: str) -> dict:
    try:
        return status_view.read(env)
    except AnsibleFailure as exc:
        raise Exit("Error: reading the status of %s: %s" % (env, exc), code=1) from None


@task(help={"env": ENV_HELP, "dry_run": DRY_RUN_HELP})
def up(c, env: str | None = None, dry_run: bool = False) -> None:
    """Bring an environment up: PostgreSQL, Redis, the api and nginx, all healthy."""
    _play(_env(env), "up", dry_run=dry_run)


@task(
    help={
        "env": ENV_HELP,
        "purge": "Delete the environment's data and config too.",
        "dry_run": DRY_RUN_HELP,
    }
)
def down(c, env: str | None = None, purge: bool = False, dry_run: bool = False) -> None:
    """Stop every service of an environment; its data is kept unless --purge."""
    _play(_env(env), "down", {"nself_purge": purge}, dry_run=dry_run)


@task(help={"env": ENV_HELP, "format": FORMAT_HELP})
def status(c, env: str | None = None, format: str = "table") -> None:  # noqa: A002
    """Show an environment's services with replicas, health and addresses."""
    env = _env(env)
    _choice("format", format, ("table", "json"))
    current = _status(env)
    if format == "json":
        print(json.dumps(status_view.public(current), indent=2))
    else:
        print(status_view.render(current))
    if current["services"] and not current["up"]:
        raise Exit(code=1)


@task(
    help={
        "env": ENV_HELP,
        "service": "Service whose log to show: " + ", ".join(SERVICES) + ".",
        "lines": "How many of the last lines to show from each instance.",
    }
)
def logs(c, service: str, env: str | None = None, lines: int = 50) -> None:
    """Show the last lines of a service's log (every replica's, one after another)."""
    env = _env(env)
    _choice("service", service, SERVICES)
    if lines < 1:
        raise Exit("Error: --lines must be at least 1, got %d" % lines, code=2)
    current = _status(env)
    entry = next((s for s in current["services"] if s["name"] == service), None)
    if entry is None:
        raise Exit("Error: %s does not run in %s" % (service, env), code=1)
    log_dir = Path(current["state_dir"]) / "logs"
    for instance in entry["instances"]:
        path = log_dir / (instance["name"] + ".log")
        print("==> %s <==" % path)
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            print("(no log yet)")
            continue
        sys.stdout.write("\n".join(text.splitlines()[-lines:]) + "\n")
