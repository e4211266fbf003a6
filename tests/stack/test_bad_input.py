"""Bad input fails at once, names the bad value and the valid ones, changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_unknown_environment(invoke, state_root):
    result = invoke("up", "--env", "qa")
    assert result.returncode != 0
    assert "unknown environment 'qa'" in result.stderr
    assert "local, prod, staging" in result.stderr
    assert "Traceback" not in result.output
    assert not (state_root / "qa").exists()


def test_unknown_environment_from_nself_env(state_root):
    env = dict(os.environ, NSELF_ENV="qa")
    proc = subprocess.run(
        [sys.executable, "-m", "invoke", "status"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "unknown environment 'qa'" in proc.stderr


def test_unknown_service(invoke):
    result = invoke("logs", "--service", "mysql")
    assert result.returncode != 0
    assert "unknown service 'mysql'" in result.stderr
    assert "valid services: postgres, pgbouncer, redis, api, nginx" in result.stderr


def test_unknown_format(invoke):
    result = invoke("status", "--format", "xml")
    assert result.returncode != 0
    assert "unknown format 'xml'" in result.stderr
    assert "table, json" in result.stderr


@pytest.mark.parametrize("words", [["bogus"], ["scale", "sideways", "api"]])
def test_nself_unknown_command(nself, words):
    result = nself(*words)
    assert result.returncode == 2
    assert "no command" in result.stderr
    assert "valid commands:" in result.stderr
    assert "status" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["bench-api", "--concurrent", "abc"],
        ["logs", "--service", "api", "--lines", "many"],
        ["scale-out", "--service", "api", "--replicas", "three"],
    ],
    ids=["typed-flag", "typed-flag-2", "untyped-flag"],
)
def test_values_of_the_wrong_type(invoke, args):
    result = invoke(*args)
    assert result.returncode != 0
    assert "invalid value %r for %s" % (args[-1], args[-2]) in result.output
    assert "it takes a whole number" in result.output
    assert "Traceback" not in result.output
    # Refused while the command line is read, before any playbook runs.
    assert "PLAY [" not in result.output
