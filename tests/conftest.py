"""Fixtures the whole suite shares.

The suite never touches a stack brought up by hand: before anything runs it points
NSELF_STATE_ROOT at a fresh folder of its own, and every environment it brings up lives
there and is purged at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible.module_utils
import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Target-side code is imported by tests as Ansible ships it: ansible.module_utils.nself.
ansible.module_utils.__path__.append(str(PROJECT_DIR / "module_utils"))

# One state root for the whole run; readable by the account the services run as.
STATE_ROOT = Path(tempfile.mkdtemp(prefix="nself-test-state-"))
STATE_ROOT.chmod(0o755)
os.environ["NSELF_STATE_ROOT"] = str(STATE_ROOT)
os.environ.pop("NSELF_ENV", None)
# The api's test-only endpoints (memory allocation to prove limits) are on in the suite.
os.environ["NSELF_API_DEBUG"] = "1"

ENV_PORTS = {"local": 18080, "staging": 28080, "prod": 38080}


class Result:
    """A finished command: its exit code and output, with the play recap parsed."""

    def __init__(self, proc: subprocess.CompletedProcess) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def recap(self) -> dict[str, int]:
        """The play recap's counters (summed over hosts)."""
        totals: dict[str, int] = {}
        for line in self.stdout.splitlines():
            if ": ok=" in line:
                for key, value in re.findall(r"(\w+)=(\d+)", line):
                    totals[key] = totals.get(key, 0) + int(value)
        assert totals, "no play recap in output:\n" + self.output
        return totals

    def json(self):
        return json.loads(self.stdout)

    def __repr__(self) -> str:
        # Failures first: the lines Ansible marks as errors, then the end of the output.
        errors = [
            line
            for line in self.output.splitlines()
            if line.startswith(("fatal:", "[ERROR]", "Error:", "    msg:", "changed:"))
            or line.startswith("TASK [")
        ]
        return "<exit %s>\n%s\n...\n%s" % (
            self.returncode,
            "\n".join(errors)[-3000:],
            self.output[-2000:],
        )


def run_invoke(*args: str, timeout: float = 900) -> Result:
    """Run `invoke ARGS` in the project folder, as a user would."""
    proc = subprocess.run(
        [str(BIN / "invoke"), *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc)


def run_nself(*args: str, timeout: float = 900) -> Result:
    proc = subprocess.run(
        [str(BIN / "nself"), *args],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="session")
def invoke():
    return run_invoke


@pytest.fixture(scope="session")
def nself():
    return run_nself


def _bring_up(env: str) -> dict:
    if not port_free(ENV_PORTS[env]):
        pytest.exit(
            "port %d is taken: stop the %s stack brought up by hand "
            "(invoke down --env %s) before running the suite"
            % (ENV_PORTS[env], env, env),
            returncode=3,
        )
    result = run_invoke("up", "--env", env)
    assert result.returncode == 0, result
    status = run_invoke("status", "--env", env, "--format", "json")
    assert status.returncode == 0, status
    return status.json()


@pytest.fixture(scope="session")
def local_stack():
    """The local environment, brought up once for the session and purged after it."""
    status = _bring_up("local")
    yield status
    run_invoke("down", "--env", "local", "--purge")


@pytest.fixture(scope="session")
def state_root() -> Path:
    return STATE_ROOT


def pytest_sessionfinish(session, exitstatus):
    # Environments a test brought up and did not take down are stopped, then removed.
    for env in ENV_PORTS:
        if (STATE_ROOT / env).exists():
            run_invoke("down", "--env", env, "--purge", timeout=300)
    shutil.rmtree(STATE_ROOT, ignore_errors=True)
