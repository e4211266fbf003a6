"""Environment resolution and the values commands validate."""

from __future__ import annotations

import pytest

from nself_ops.envs import InputError, environments, resolve_env


def test_every_inventory_is_an_environment():
    assert environments() == ["local", "prod", "staging"]


def test_resolve_env_defaults_to_local(monkeypatch):
    monkeypatch.delenv("NSELF_ENV", raising=False)
    assert resolve_env(None) == "local"
    monkeypatch.setenv("NSELF_ENV", "prod")
    assert resolve_env(None) == "prod"
    assert resolve_env("staging") == "staging"


def test_resolve_env_names_the_valid_ones():
    with pytest.raises(InputError, match=r"'qa'; valid environments: local, prod"):
        resolve_env("qa")
