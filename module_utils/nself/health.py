"""Health checks the runtimes and the status module share: TCP connect or HTTP GET."""

from __future__ import annotations

import http.client
import socket
import time


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def check(endpoint: str, health: dict | None, timeout: float = 2.0) -> tuple[bool, str]:
    """Probe one endpoint once; return (healthy, reason)."""
    health = health or {"type": "tcp"}
    host, port = split_endpoint(endpoint)
    try:
        if health.get("type") == "http":
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request("GET", health.get("path", "/"))
                response = conn.getresponse()
                response.read()
            finally:
                conn.close()
            if response.status != 200:
                return False, "GET %s answered %s" % (
                    health.get("path"),
                    response.status,
                )
            return True, "ok"
        with socket.create_connection((host, port), timeout=timeout):
            return True, "ok"
    except OSError as exc:
        return False, "%s: %s" % (endpoint, exc)


def wait_healthy(
    endpoint: str, health: dict | None, timeout: float
) -> tuple[bool, str]:
    """Probe until healthy or the timeout passes; return the last result."""
    deadline = time.monotonic() + timeout
    result = (False, "not probed")
    while time.monotonic() < deadline:
        result = check(endpoint, health)
        if result[0]:
            return result
        time.sleep(0.1)
    return result
