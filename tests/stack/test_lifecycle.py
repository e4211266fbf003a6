"""An environment's life: dry run on nothing, up, rerun, down keeping data, purge.

It uses the staging environment, so the local stack the other tests share is untouched,
and shows that environments run side by side on their own ports and state folders.
"""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

pytestmark = pytest.mark.stack

URL = "http://127.0.0.1:28080"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def post(path: str, body: dict) -> dict:
    request = urllib.request.Request(
        URL + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())


def orders_of(user_id: int) -> list[int]:
    with urllib.request.urlopen(URL + "/api/orders?user_id=%d" % user_id) as response:
        return [o["id"] for o in json.loads(response.read())["orders"]]


class TestStagingLifecycle:
    def test_dry_run_on_a_fresh_environment_changes_nothing(self, invoke, state_root):
        result = invoke("up", "--env", "staging", "--dry-run")
        assert result.returncode == 0, result
        # It says what a real run would do ...
        assert result.recap()["changed"] > 0
        assert "Ensure the environment has its own PostgreSQL cluster" in result.stdout
        assert "+[program:api_1]" in result.stdout
        # ... and does none of it.
        assert not (state_root / "staging").exists()
        assert not any(listening(p) for p in (25432, 26379, 28080, 28101))

    def test_up_brings_every_service_up(self, invoke):
        result = invoke("up", "--env", "staging")
        assert result.returncode == 0, result
        assert result.recap()["changed"] > 0
        status = invoke("status", "--env", "staging", "--format", "json").json()
        assert status["up"] is True
        assert status["url"] == URL

    def test_second_up_reports_no_change(self, invoke):
        result = invoke("up", "--env", "staging")
        assert result.returncode == 0, result
        assert result.recap()["changed"] == 0, result

    def test_down_stops_everything_and_keeps_data(self, invoke, state_root):
        order = post(
            "/api/orders", {"user_id": 7, "items": [{"product_id": 3, "quantity": 2}]}
        )
        result = invoke("down", "--env", "staging")
        assert result.returncode == 0, result
        assert not any(listening(p) for p in (25432, 26379, 28080, 28101))
        assert (state_root / "staging" / "postgres" / "data" / "PG_VERSION").exists()

        again = invoke("down", "--env", "staging")
        assert again.recap()["changed"] == 0, again

        result = invoke("up", "--env", "staging")
        assert result.returncode == 0, result
        assert order["order_id"] in orders_of(7)

    def test_down_purge_deletes_the_environment(self, invoke, state_root):
        result = invoke("down", "--env", "staging", "--purge")
        assert result.returncode == 0, result
        assert not (state_root / "staging").exists()
        assert not listening(28080)
