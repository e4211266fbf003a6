"""An environment's status: read through the nself_status module, shown as a table."""

from __future__ import annotations

from nself_ops.ansible import run_module
from nself_ops.tables import box, columns


def read(env: str) -> dict:
    """The environment's status as the nself_status module reports it."""
    result = run_module(
        env,
        "nself_status",
        {
            "state_dir": "{{ nself_state_dir }}",
            "env": "{{ nself_env }}",
            "runtime": "{{ nself_runtime }}",
            "runtime_options": "{{ nself_runtime_options | default({}) }}",
            "url": "http://{{ nself_bind_address }}:{{ nself_ports.nginx }}",
        },
    )
    return result["status"]


def public(status: dict) -> dict:
    """The documented JSON shape for scripts and CI."""
    return {
        "env": status["env"],
        "runtime": status["runtime"],
        "url": status["url"],
        "up": status["up"],
        "services": [
            {
                "name": s["name"],
                "replicas": s["replicas"],
                "running": s["running"],
                "healthy": s["healthy"],
                "endpoints": s["endpoints"],
            }
            for s in status["services"]
        ],
    }


def render(status: dict) -> str:
    if not status["services"]:
        return box(
            "Environment %s: not set up" % status["env"],
            ["Nothing runs yet; bring it up with: invoke up --env %s" % status["env"]],
        )
    rows = [
        [
            s["name"],
            "%d/%d" % (s["running"], s["replicas"]),
            "healthy" if s["healthy"] else "UNHEALTHY",
            ", ".join(s["endpoints"]),
        ]
        for s in status["services"]
    ]
    lines = columns(["Service", "Running", "Health", "Endpoints"], rows)
    lines += ["", "URL: %s   Runtime: %s" % (status["url"], status["runtime"])]
    title = "Environment %s: %s" % (
        status["env"],
        "up" if status["up"] else "DEGRADED",
    )
    return box(title, lines)
