"""Running the project's playbooks and modules, the way every task does it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from nself_ops import PROJECT_DIR, log
from nself_ops.envs import INVENTORIES, service_user, state_root

PLAYBOOKS = PROJECT_DIR / "playbooks"


class AnsibleFailure(RuntimeError):
    """A playbook or module run failed; the message is Ansible's."""


def _bin(name: str) -> str:
    # The Ansible of the virtualenv the toolkit runs in, not whatever is on PATH.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT_DIR / "ansible.cfg"),
        NSELF_STATE_ROOT=str(state_root()),
        NSELF_SERVICE_USER=service_user(),
        ANSIBLE_FORCE_COLOR=env.get("ANSIBLE_FORCE_COLOR", "0"),
    )
    return env


def playbook_path(name: str) -> Path:
    return PLAYBOOKS / (name.replace("-", "_") + ".yml")


def run_playbook(
    env: str,
    playbook: str,
    *,
    extra_vars: dict | None = None,
    dry_run: bool = False,
    diff: bool = False,
    capture: bool = False,
) -> subprocess.CompletedProcess:
    """Run playbooks/<playbook>.yml against an environment; Ansible's output is shown.

    With dry_run the playbook runs in check and diff mode: it shows what would change
    and changes nothing.
    """
    argv = [
        _bin("ansible-playbook"),
        "-i",
        str(INVENTORIES / env),
        str(playbook_path(playbook)),
    ]
    if extra_vars:
        argv += ["--extra-vars", json.dumps(extra_vars)]
    if dry_run:
        argv += ["--check", "--diff"]
    elif diff:
        argv.append("--diff")
    log.debug("running %s", argv)
    return subprocess.run(
        argv,
        cwd=PROJECT_DIR,
        env=environment(),
        check=False,
        capture_output=capture,
        text=True,
    )


def run_module(env: str, module: str, args: dict, *, check: bool = False) -> dict:
    """Run one module against the environment's hosts; return the first host's result.

    Arguments are templated with the inventory's variables, so `{{ nself_state_dir }}`
    works as it does in a playbook. `check` runs it in check mode.
    """
    argv = [
        _bin("ansible"),
        "nself",
        "-i",
        str(INVENTORIES / env),
        "-m",
        module,
        "-a",
        json.dumps(args),
        "--one-line",
    ] + (["--check"] if check else [])
    log.debug("running %s", argv)
    result = subprocess.run(
        argv,
        cwd=PROJECT_DIR,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        host, sep, payload = line.partition(" => ")
        if not sep:
            continue
        data = json.loads(payload)
        if "FAILED" in host or "UNREACHABLE" in host or data.get("failed"):
            raise AnsibleFailure(data.get("msg") or payload)
        return data
    raise AnsibleFailure(
        "running %s on %s gave no result: %s"
        % (module, env, (result.stderr or result.stdout).strip())
    )
