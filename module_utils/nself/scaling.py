"""The environment's desired scaling, kept in `scaling.yaml` in its state folder.

The file is shaped like the `deploy:` section of a Compose file, so operators who know
Compose read it at a glance:

    services:
      api:
        deploy:
          replicas: 3
          resources:
            limits: {memory: 512M, cpus: "0.5"}
            reservations: {memory: 256M, cpus: "0.25"}
"""

from __future__ import annotations

import os

import yaml


def scaling_path(state_dir: str) -> str:
    return os.path.join(state_dir, "scaling.yaml")


def load(state_dir: str) -> dict:
    """The desired state, or an empty one where nothing was scaled yet."""
    try:
        with open(scaling_path(state_dir)) as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        data = {}
    data.setdefault("services", {})
    return data


def dump(data: dict) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True)


def desired_replicas(state_dir: str, service: str, default: int = 1) -> int:
    deploy = load(state_dir)["services"].get(service, {}).get("deploy", {})
    return int(deploy.get("replicas", default))
