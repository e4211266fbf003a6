"""Every custom module documents itself, and its documentation matches its options."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (PROJECT / "library").glob("nself_*.py"))


class _Captured(Exception):
    def __init__(self, spec: dict) -> None:
        self.spec = spec


def argument_spec(name: str) -> dict:
    """The module's argument_spec, taken from its own AnsibleModule call."""
    spec = importlib.util.spec_from_file_location(
        name, PROJECT / "library" / (name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def capture(**kwargs):
        raise _Captured(kwargs["argument_spec"])

    module.AnsibleModule = capture
    with pytest.raises(_Captured) as captured:
        module.main()
    return captured.value.spec


@pytest.fixture(scope="module")
def docs() -> dict:
    """ansible-doc's view of every module, documentation fragments merged in."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-M", "library", "--json"]
        + MODULES,
        cwd=PROJECT,
        env={"ANSIBLE_CONFIG": str(PROJECT / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_the_argument_spec(docs, name):
    doc = docs[name]["doc"]
    spec = argument_spec(name)
    assert set(doc["options"]) == set(spec), name
    for option, settings in spec.items():
        documented = doc["options"][option]
        assert documented.get("type", "str") == settings.get("type", "str"), option
        assert bool(documented.get("required")) == bool(settings.get("required")), (
            option
        )
        if "choices" in settings:
            assert list(documented["choices"]) == list(settings["choices"]), option
        if "default" in settings and settings["default"] is not None:
            assert documented.get("default") == settings["default"], option


@pytest.mark.parametrize("name", MODULES)
def test_examples_and_return_are_there(docs, name):
    assert yaml.safe_load(docs[name]["examples"])
    assert docs[name]["return"], name
    attributes = docs[name]["doc"]["attributes"]
    assert {"check_mode", "diff_mode"} <= set(attributes)
