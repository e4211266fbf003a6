"""`scale-status`: desired against running scaling, read through nself_scale_info."""

from __future__ import annotations

from nself_ops.ansible import run_module
from nself_ops.tables import box, columns

MODULE_ARGS = {
    "state_dir": "{{ nself_state_dir }}",
    "env": "{{ nself_env }}",
    "runtime": "{{ nself_runtime }}",
    "runtime_options": "{{ nself_runtime_options | default({}) }}",
}


def read(env: str, service: str | None = None) -> dict:
    """The documented JSON shape: services with resources and instances."""
    args = dict(MODULE_ARGS, services=[service] if service else [])
    result = run_module(env, "nself_scale_info", args)
    services = []
    for entry in result["services"]:
        resources = entry["resources"] or {}
        limits = resources.get("limits", {})
        services.append(
            {
                "name": entry["name"],
                "replicas": entry["replicas"],
                "running": entry["running"],
                "resources": {
                    "memory": limits.get("memory"),
                    "cpus": limits.get("cpus"),
                    "reservations": resources.get("reservations", {}),
                },
                "autoscale": entry["autoscale"],
                # None where limits are not enforced, so nothing could be read back.
                "limits_in_force": entry.get("limits_in_force"),
                "instances": [
                    {
                        "name": i["name"],
                        "endpoint": i["endpoint"],
                        "state": i["state"],
                        "cpu_percent": i["cpu_percent"],
                        "memory_bytes": i["memory_bytes"],
                        "limits": i.get("limits"),
                    }
                    for i in entry["instances"]
                ],
            }
        )
    return {
        "services": services,
        "limits_enforced": result["enforcement"] is None,
        "enforcement": result["enforcement"],
    }


def _mib(value: int | None) -> str:
    return "-" if value is None else "%.1f MiB" % (value / 1024**2)


def _autoscale(settings: dict | None) -> str:
    if not settings or not settings.get("enabled", True):
        return "off"
    return "%s-%s @%s%%" % (
        settings.get("min", "?"),
        settings.get("max", "?"),
        settings.get("cpu_threshold", "?"),
    )


def _reserved(reservations: dict) -> str:
    parts = [reservations[k] for k in ("memory", "cpus") if reservations.get(k)]
    return " / ".join(parts) or "none"


def _limits(limits: dict | None) -> str:
    """An instance's limits in force: "512M / 0.5 CPU", "none", or "-" unknown."""
    if limits is None:
        return "-"
    parts = []
    if limits.get("memory"):
        parts.append(limits["memory"])
    if limits.get("cpus"):
        parts.append(limits["cpus"] + " CPU")
    return " / ".join(parts) or "none"


def _in_force(value: bool | None) -> str:
    return {True: "yes", False: "NO", None: "-"}[value]


def render(env: str, report: dict) -> str:
    rows = [
        [
            s["name"],
            "%d/%d" % (s["running"], s["replicas"]),
            s["resources"]["memory"] or "none",
            s["resources"]["cpus"] or "none",
            _reserved(s["resources"]["reservations"]),
            _in_force(s["limits_in_force"]),
            _autoscale(s["autoscale"]),
        ]
        for s in report["services"]
    ]
    lines = columns(
        ["Service", "Running", "Memory", "CPUs", "Reserved", "In force", "Autoscale"],
        rows,
    )
    lines.append("")
    instance_rows = [
        [
            i["name"],
            i["endpoint"],
            i["state"].lower(),
            "-" if i["cpu_percent"] is None else "%.1f%%" % i["cpu_percent"],
            _mib(i["memory_bytes"]),
            _limits(i["limits"]),
        ]
        for s in report["services"]
        for i in s["instances"]
    ]
    lines += columns(
        ["Instance", "Endpoint", "State", "CPU", "Memory", "Limits"], instance_rows
    )
    if report["enforcement"]:
        lines += ["", "Limits are recorded but not enforced: " + report["enforcement"]]
    return box("Scaling: %s" % env, lines)
