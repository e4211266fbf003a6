"""The scaling helpers: sizes, the limits a step reaches, and limits as enforced."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from ansible.module_utils.nself import scaling
from ansible.module_utils.nself.cgroups import Cgroups, as_enforced
from ansible.module_utils.nself.runtime import RuntimeFailure

PROJECT_DIR = Path(__file__).resolve().parents[2]
MIB = 1024**2
GIB = 1024**3


def _load_scale_module():
    spec = importlib.util.spec_from_file_location(
        "nself_scale", PROJECT_DIR / "library" / "nself_scale.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nself_scale = _load_scale_module()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512M", 512 * MIB),
        ("4G", 4 * GIB),
        ("4g", 4 * GIB),
        ("1.5G", int(1.5 * GIB)),
        ("64k", 64 * 1024),
        ("1048576", 1048576),
        ("2GB", 2 * GIB),
        ("512MiB", 512 * MIB),
    ],
)
def test_memory_sizes_parse(text, expected):
    assert scaling.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["4X", "", "G", "-1G", "four"])
def test_bad_memory_sizes_are_refused(text):
    with pytest.raises(RuntimeFailure, match="is not a size"):
        scaling.parse_memory(text)


@pytest.mark.parametrize("value", [512 * MIB, 4 * GIB, 1395864371, 6 * MIB + 4096])
def test_memory_formats_back_exactly(value):
    assert scaling.parse_memory(scaling.format_memory(value)) == value


def params(state_dir: Path, **given) -> dict:
    base = dict(
        state_dir=str(state_dir),
        service="api",
        runtime="process",
        memory=None,
        cpus=None,
        step=None,
        default_memory="512M",
        default_cpus="0.5",
        memory_bounds=["64M", "16G"],
        cpu_bounds=["0.1", "8"],
        replicas=None,
        delta=0,
        ceiling=10,
        load_balanced=["api"],
        single_instance=["postgres", "redis"],
    )
    base.update(given)
    return base


def test_a_step_up_doubles_the_default_and_reserves_half(tmp_path):
    resources, notes = nself_scale.plan_resources(params(tmp_path, step="up"))
    cpus = min(1.0, float(os.cpu_count()))
    assert resources == {
        "limits": {"memory": GIB, "cpus": cpus},
        "reservations": {"memory": 512 * MIB, "cpus": round(cpus / 2, 3)},
    }
    assert notes == []


def test_a_step_stops_at_its_bound_and_says_so(tmp_path):
    scaling_file = Path(scaling.scaling_path(str(tmp_path)))
    scaling_file.write_text(
        "services:\n  api:\n    deploy:\n      resources:\n"
        "        limits: {memory: 64M, cpus: '0.1'}\n"
    )
    resources, notes = nself_scale.plan_resources(params(tmp_path, step="down"))
    assert resources["limits"] == {"memory": 64 * MIB, "cpus": 0.1}
    assert notes == [
        "memory is already at its bound (64M to 16G)",
        "cpus are already at their bound (0.1 to %g)" % min(8, os.cpu_count()),
    ]


def test_a_step_up_on_the_process_runtime_stops_at_the_hosts_cpus(tmp_path):
    host = os.cpu_count()
    Path(scaling.scaling_path(str(tmp_path))).write_text(
        "services:\n  api:\n    deploy:\n      resources:\n"
        "        limits: {cpus: '%d'}\n" % host
    )
    resources, notes = nself_scale.plan_resources(params(tmp_path, step="up"))
    assert resources["limits"]["cpus"] == host
    assert any("cpus are already at their bound" in note for note in notes)
    # An engine elsewhere may have more CPUs: only its own check applies there.
    resources, _ = nself_scale.plan_resources(
        params(tmp_path, step="up", runtime="swarm")
    )
    assert resources["limits"]["cpus"] == min(8, 2 * host)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"cpus": "nan"}, "invalid cpu 'nan'"),
        ({"cpus": "inf"}, "invalid cpu 'inf'"),
        ({"cpus": "0.001"}, "of at least 0.01"),
        ({"memory": "1"}, "of at least 6M"),
        ({"memory": "4X"}, "invalid memory '4X'"),
        ({"cpus": "1000"}, "valid values are from 0.01 to"),
    ],
)
def test_bad_limits_are_refused_before_anything_is_planned(tmp_path, given, message):
    with pytest.raises(nself_scale.BadInput, match=message):
        nself_scale.plan_resources(params(tmp_path, **given))


def test_a_service_behind_the_load_balancer_keeps_one_replica(tmp_path):
    with pytest.raises(nself_scale.BadInput, match="valid counts: 1 to 10"):
        nself_scale.target_replicas(params(tmp_path, replicas=0), 1)
    assert nself_scale.target_replicas(params(tmp_path, load_balanced=[]), 1) == 1
    assert (
        nself_scale.target_replicas(params(tmp_path, delta=-1, load_balanced=[]), 1)
        == 0
    )


@pytest.mark.parametrize(
    ("cpus", "quota"),
    [(0.01, 1000), (0.29, 29000), (0.57, 57000), (1.15, 115000), (2.3, 230000)],
)
def test_cpu_quota_reads_back_as_the_limit_written(tmp_path, cpus, quota):
    root = tmp_path / "cgroup"
    for controller in ("memory", "cpu"):
        (root / controller).mkdir(parents=True)
    groups = Cgroups(str(tmp_path), "local", root=str(root))
    files = groups.desired_files({"limits": {"cpus": cpus}})["cpu"]
    assert int(files["cpu.cfs_quota_us"]) == quota
    assert as_enforced({"cpus": cpus})["cpus"] == quota / 100_000
    assert scaling.same_limits({"cpus": cpus}, {"cpus": quota / 100_000})


def test_memory_is_enforced_in_whole_pages():
    page = os.sysconf("SC_PAGE_SIZE")
    asked = int(1.3 * GIB)
    enforced = as_enforced({"memory": asked})["memory"]
    assert enforced % page == 0 and asked - page < enforced <= asked
    assert scaling.same_limits({"memory": asked}, {"memory": enforced})
    assert not scaling.same_limits({"memory": asked}, {"memory": asked // 2})
    assert not scaling.same_limits({"memory": asked}, {})


def test_probing_for_cgroups_creates_nothing(tmp_path):
    root = tmp_path / "cgroup"
    for controller in ("memory", "cpu"):
        (root / controller).mkdir(parents=True)
    groups = Cgroups(str(tmp_path), "local", root=str(root))
    assert groups.unavailable() is None
    assert sorted(p.name for p in root.iterdir()) == ["cpu", "memory"]
    assert list((root / "memory").iterdir()) == []


def test_a_limited_instance_may_not_swap_where_swap_is_accounted(tmp_path):
    root = tmp_path / "cgroup"
    for controller in ("memory", "cpu"):
        (root / controller).mkdir(parents=True)
    groups = Cgroups(str(tmp_path), "local", root=str(root))
    limited = {"limits": {"memory": 256 * MIB}}
    assert "memory.memsw.limit_in_bytes" not in groups.desired_files(limited)["memory"]
    (root / "memory" / "memory.memsw.limit_in_bytes").write_text("-1\n")
    files = groups.desired_files(limited)["memory"]
    assert files["memory.memsw.limit_in_bytes"] == str(256 * MIB)
    assert groups.desired_files({})["memory"]["memory.memsw.limit_in_bytes"] == "-1"


def test_memory_and_swap_are_written_in_an_order_the_kernel_takes(tmp_path):
    from ansible.module_utils.nself.cgroups import _write_order

    (tmp_path / "memory.limit_in_bytes").write_text(str(256 * MIB))
    files = {
        "memory.limit_in_bytes": str(512 * MIB),
        "memory.soft_limit_in_bytes": str(256 * MIB),
        "memory.memsw.limit_in_bytes": str(512 * MIB),
    }
    rising = [name for name, _ in _write_order(str(tmp_path), files)]
    assert rising.index("memory.memsw.limit_in_bytes") == 0
    files = dict.fromkeys(files, str(128 * MIB))
    falling = [name for name, _ in _write_order(str(tmp_path), files)]
    assert falling[-1] == "memory.memsw.limit_in_bytes"
    unlimited = dict.fromkeys(files, "-1")
    order = [name for name, _ in _write_order(str(tmp_path), unlimited)]
    assert order[0] == "memory.memsw.limit_in_bytes"
