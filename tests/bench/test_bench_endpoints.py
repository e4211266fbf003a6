"""The endpoints bench-api loads: the inventories' lists and names given by hand."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from nself_ops import PROJECT_DIR
from nself_ops.bench import api
from nself_ops.bench.errors import BenchInputError

sys.path.insert(0, str(PROJECT_DIR / "sample_api"))
from nself_sample_api import app as sample_app  # noqa: E402

INVENTORIES = sorted((PROJECT_DIR / "inventories").glob("*/group_vars/all.yml"))

LISTED = [
    "GET /api/health",
    "GET /api/users",
    "GET /api/products",
    "GET /api/products/1",
    "GET /api/orders?user_id=42",
    {
        "endpoint": "POST /api/orders",
        "body": {"user_id": 42, "items": [{"product_id": 1, "quantity": 1}]},
    },
]


def listed_in(path: Path) -> list:
    return YAML(typ="safe").load(path.read_text())["nself_bench_endpoints"]


@pytest.mark.parametrize("inventory", INVENTORIES, ids=lambda p: p.parts[-3])
def test_every_inventory_lists_reads_and_a_write_the_sample_api_accepts(inventory):
    listed = listed_in(inventory)
    assert listed == LISTED
    router = sample_app.Application(
        sample_app.Config(
            database_url="postgresql://nobody@127.0.0.1/none",
            redis_url="redis://127.0.0.1:1/0",
            replica="test",
        )
    ).router
    for item in listed:
        request = api.as_request(item)
        path, _, query = request.path.partition("?")
        # Routed (no 404 or 405), and the query a real one.
        router.resolve(request.method, path)
        sample_app.parse_query_string(query)
        if request.method == "POST":
            body = json.loads(request.body)
            assert body == item["body"]
            assert sample_app.body_int(body, "user_id") == 42
            assert sample_app.body_order_lines(body) == [(1, 1)]


@pytest.mark.parametrize(
    ("given", "label", "resolved"),
    [
        ("/users", "GET /api/users", True),
        ("users", None, None),
        ("GET /users", "GET /api/users", True),
        ("/products", "GET /api/products", True),
        ("/products/1", "GET /api/products/1", True),
        ("/orders?user_id=42", "GET /api/orders?user_id=42", True),
        ("POST /orders", "POST /api/orders", True),
        ("GET /api/users", "GET /api/users", False),
        ("/api/products/7", "GET /api/products/7", False),
        ("/nope", "GET /nope", False),
        ("/orders", "GET /orders", False),
    ],
)
def test_an_endpoint_named_by_the_end_of_its_path_resolves(given, label, resolved):
    if label is None:
        with pytest.raises(BenchInputError, match="must start with '/'"):
            api.resolve_endpoint(given, LISTED)
        return
    chosen, note = api.resolve_endpoint(given, LISTED)
    assert api.label_of(chosen) == label
    if resolved:
        assert note == f"{given} is {label} (listed in the inventory)"
    else:
        assert note is None


def test_a_listed_write_keeps_its_body_when_named():
    chosen, note = api.resolve_endpoint("POST /orders", LISTED)
    assert chosen is LISTED[-1]
    exact, none = api.resolve_endpoint("POST /api/orders", LISTED)
    assert exact is LISTED[-1] and none is None


def test_an_ambiguous_end_of_path_names_the_candidates():
    listed = ["GET /api/v1/users", "GET /api/v2/users"]
    with pytest.raises(
        BenchInputError, match="could be any of GET /api/v1/users, GET /api/v2/users"
    ):
        api.resolve_endpoint("/users", listed)


def test_the_listed_write_reaches_the_server_with_its_body(delay_server):
    delay_server.delay_s = 0.0
    delay_server.requests()
    chosen, _note = api.resolve_endpoint("POST /orders", LISTED)
    out = api.bench_api(delay_server.url, [chosen], concurrency=2, duration=1)
    assert out["summary"]["endpoints"][0]["endpoint"] == "POST /api/orders"
    seen = delay_server.requests()
    assert len(seen) > 10
    body = json.dumps(LISTED[-1]["body"])
    assert set(seen) == {("POST", "/api/orders", body)}


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_nself_says_how_it_resolved_the_endpoint(nself):
    if _port_in_use(38080):
        pytest.skip("the prod environment's nginx port is in use")
    result = nself("bench", "api", "/users", "--env", "prod", "--duration", "1")
    assert "Endpoint: /users is GET /api/users (listed in the inventory)" in (
        result.stderr
    ), result
    # prod is not up here: the resolved endpoint is then reported as down.
    assert result.returncode == 1, result
    assert "environment prod is down" in result.stderr
