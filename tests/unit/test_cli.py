"""The nself grammar: leading words name a task, bare words fill its positionals."""

from __future__ import annotations

import pytest
from invoke import Collection, task

from nself_ops.cli import load_tasks, translate


@task(positional=["service"])
def scale_out(c, service, replicas=0):
    """Fake scale-out."""


@task(positional=["service"])
def scale(c, service):
    """A shorter task that must lose to the longer match."""


@task(positional=["source", "target"])
def migrate_diff(c, source, target, schema=False):
    """Fake migrate-diff."""


@task
def status(c, format="table"):  # noqa: A002
    """Fake status."""


@pytest.fixture
def collection() -> Collection:
    return Collection(scale_out, scale, migrate_diff, status)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            ["scale", "out", "api", "--replicas", "3"],
            ["scale-out", "--service", "api", "--replicas", "3"],
        ),
        (["scale", "api"], ["scale", "--service", "api"]),
        (
            ["migrate", "diff", "staging", "prod", "--schema"],
            ["migrate-diff", "--source", "staging", "--target", "prod", "--schema"],
        ),
        (["status", "--format", "json"], ["status", "--format", "json"]),
        (["scale-out", "api"], ["scale-out", "--service", "api"]),
    ],
    ids=["longest-match", "shorter-task", "two-positionals", "flags-only", "dashed"],
)
def test_translate(collection, words, expected):
    assert translate(words, collection) == expected


def test_flag_values_are_not_taken_for_positionals(collection):
    assert translate(["scale", "out", "--replicas", "3", "api"], collection) == [
        "scale-out",
        "--replicas",
        "3",
        "--service",
        "api",
    ]


def test_unknown_words_name_the_valid_commands(collection):
    with pytest.raises(ValueError, match="no command 'frobnicate now'") as err:
        translate(["frobnicate", "now"], collection)
    assert "scale-out" in str(err.value)


def test_too_many_positionals(collection):
    with pytest.raises(ValueError, match="unexpected argument 'extra'"):
        translate(["scale", "out", "api", "extra"], collection)


def test_project_tasks_load():
    names = set(load_tasks().task_names)
    assert {"up", "down", "status", "logs"} <= names
