"""Environment resolution and the values commands validate."""

from __future__ import annotations

import pytest

from nself_ops.envs import InputError, environments, parse_memory, resolve_env


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 * 1024**2),
        ("4G", 4 * 1024**3),
        ("4g", 4 * 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        ("64k", 64 * 1024),
        ("1048576", 1048576),
        ("2GB", 2 * 1024**3),
    ],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["4X", "", "G", "-1G", "four"])
def test_parse_memory_rejects(text):
    with pytest.raises(InputError, match="invalid memory"):
        parse_memory(text)
