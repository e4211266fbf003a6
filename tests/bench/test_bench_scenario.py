"""Unit tests of scenario loading: the plan's format; errors name file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nself_ops.bench import scenario
from nself_ops.bench.errors import BenchInputError, ScenarioError

PROJECT = Path(__file__).resolve().parents[2]
SHIPPED = PROJECT / "bench" / "scenarios" / "checkout.yaml"

GOOD = """\
name: Small
description: Two steps
steps:
  - name: List
    endpoint: GET /api/products
    weight: 0.75
  - name: One
    endpoint: GET /api/products/{id}
    weight: 0.25
settings:
  users: 5
  duration: 30
  ramp_up: 10
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_checkout_scenario_follows_the_plan():
    sc = scenario.load(SHIPPED)
    assert sc.name == "Checkout Flow"
    assert sc.description == "Simulate user checkout process"
    assert [(s.name, s.endpoint, s.weight) for s in sc.steps] == [
        ("Browse products", "GET /api/products", 0.4),
        ("View product", "GET /api/products/{id}", 0.3),
        ("Add to cart", "POST /api/cart", 0.15),
        ("Checkout", "POST /api/checkout", 0.1),
        ("Payment", "POST /api/payment", 0.05),
    ]
    assert (sc.users, sc.duration, sc.ramp_up) == (100, 300, 60)
    # An order can be paid once: each payment uses a different one.
    assert [s.name for s in sc.steps if s.unique] == ["Payment"]


def test_good_scenario_parses_with_settings(tmp_path):
    sc = scenario.load(write(tmp_path, GOOD))
    assert [s.placeholders() for s in sc.steps] == [[], ["id"]]
    assert (sc.users, sc.duration, sc.ramp_up) == (5, 30.0, 10.0)
    assert sc.steps[1].line == 7


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "problem"),
    [
        ("    weight: 0.25", "    weight: -1", 9, "steps[1].weight", "greater than 0"),
        ("    weight: 0.25", "    weight: lots", 9, "steps[1].weight", "a number"),
        ("    weight: 0.75", "    wieght: 0.75", 6, "steps[0].wieght", "unknown field"),
        (
            "    endpoint: GET /api/products/{id}",
            "    endpoint: FETCH /api/products/{id}",
            8,
            "steps[1].endpoint",
            "unknown method 'FETCH'",
        ),
        (
            "    endpoint: GET /api/products\n",
            "    endpoint: /api/products\n",
            5,
            "steps[0].endpoint",
            "METHOD /path",
        ),
        ("  users: 5", "  users: 0", 11, "settings.users", "greater than 0"),
        ("  duration: 30", "  duration: -5", 12, "settings.duration", "greater than 0"),
        ("  ramp_up: 10", "  ramp_up: 30", 13, "settings.ramp_up", "shorter than"),
        ("  ramp_up: 10", "  rampup: 10", 13, "settings.rampup", "unknown field"),
        ("name: Small", "name: ''", 1, "name", "non-empty"),
        (
            "    weight: 0.25",
            "    weight: 0.25\n    unique: yes please",
            10,
            "steps[1].unique",
            "true or false",
        ),
        (
            "    weight: 0.75",
            "    weight: 0.75\n    unique: true",
            7,
            "steps[0].unique",
            "needs a {placeholder}",
        ),
        ("    weight: 0.25", "    weight: .nan", 9, "steps[1].weight", "finite"),
        ("    weight: 0.75", "    weight: .inf", 6, "steps[0].weight", "finite"),
        ("  duration: 30", "  duration: .inf", 12, "settings.duration", "finite"),
        ("  duration: 30", "  duration: .NaN", 12, "settings.duration", "finite"),
        ("  ramp_up: 10", "  ramp_up: .nan", 13, "settings.ramp_up", "finite"),
        ("  ramp_up: 10", "  ramp_up: -.inf", 13, "settings.ramp_up", "finite"),
    ],
)
def test_malformed_field_names_file_line_and_field(
    tmp_path, old, new, line, field, problem
):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ScenarioError) as caught:
        scenario.load(path)
    err = caught.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert problem in str(err)
    assert str(err).startswith(f"{path}:{line}: {field}: ")


def test_missing_endpoint_is_reported_on_the_step_line(tmp_path):
    path = write(tmp_path, GOOD.replace("    endpoint: GET /api/products\n", ""))
    with pytest.raises(
        ScenarioError, match=r"s\.yaml:4: steps\[0\]\.endpoint: is required"
    ):
        scenario.load(path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, GOOD.replace("  - name: One", "  - name: [One"))
    with pytest.raises(ScenarioError) as caught:
        scenario.load(path)
    assert caught.value.line is not None and caught.value.line >= 7
    assert caught.value.field == "(syntax)"


def test_empty_steps_and_duplicate_names_are_refused(tmp_path):
    with pytest.raises(ScenarioError, match="non-empty list"):
        scenario.parse("name: x\nsteps: []\n", "x.yaml")
    dup = GOOD.replace("  - name: One", "  - name: List")
    with pytest.raises(
        ScenarioError, match=r"x\.yaml:7: steps\[1\]\.name: 'List' is used twice"
    ):
        scenario.parse(dup, "x.yaml")


def test_unknown_scenario_lists_the_available_ones(tmp_path):
    write(tmp_path, GOOD, "small.yaml")
    assert scenario.find("small", tmp_path) == tmp_path / "small.yaml"
    with pytest.raises(
        BenchInputError, match=r"unknown scenario 'nope'.*available: small"
    ):
        scenario.find("nope", tmp_path)
    with pytest.raises(BenchInputError, match="file name"):
        scenario.find("../etc/passwd", tmp_path)


def test_scenarios_path_comes_from_the_environment(tmp_path, monkeypatch):
    write(tmp_path, GOOD, "mine.yaml")
    monkeypatch.setenv("BENCH_SCENARIOS_PATH", str(tmp_path))
    assert scenario.available() == ["mine"]


def test_placeholders_are_filled_from_real_rows():
    sc = scenario.load(SHIPPED)
    fill = {
        "id": [11, 12],
        "user_id": [7],
        "product_id": [11],
        "order": [{"order_id": 90, "amount": "12.50"}],
    }
    steps = scenario.build_steps(sc, fill, seed=1)
    assert len(steps[0].requests) == 1
    view_paths = {r.path for r in steps[1].requests}
    assert view_paths == {"/api/products/11", "/api/products/12"}
    cart = json.loads(steps[2].requests[0].body)
    assert cart == {"user_id": 7, "product_id": 11, "quantity": 1}
    pay = json.loads(steps[4].requests[0].body)
    assert pay == {"order_id": 90, "amount": "12.50"}
    assert steps[1].label == "GET /api/products/{id}"


def test_unfilled_placeholder_names_the_step_line(tmp_path):
    sc = scenario.load(write(tmp_path, GOOD))
    with pytest.raises(ScenarioError) as caught:
        scenario.build_steps(sc, {"user_id": [1]})
    assert caught.value.line == 7
    assert "{id}" in str(caught.value)
    assert "user_id" in str(caught.value)
