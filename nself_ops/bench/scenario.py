"""Load-test scenarios: YAML files in BENCH_SCENARIOS_PATH, read and checked.

The format is the plan's::

    name: Checkout Flow
    description: Simulate user checkout process
    steps:
      - name: View product
        endpoint: GET /api/products/{id}
        weight: 0.3
    settings:
      users: 100
      duration: 300
      ramp_up: 60

extended, compatibly, by three optional keys per step: ``body`` (a mapping
sent as JSON, or text), ``headers``, and ``unique`` (true: no two requests of
the step use the same row, for requests that can succeed once per row, such
as paying an order). ``{name}`` placeholders in the path or the body are
filled from real rows the caller supplies. Every error names the file, the
line and the field.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from . import project_path
from .engine import METHODS, HttpRequest, Step
from .errors import BenchInputError, ScenarioError

DEFAULT_SCENARIOS_PATH = "bench/scenarios"

TOP_KEYS = ("name", "description", "steps", "settings")
STEP_KEYS = ("name", "endpoint", "weight", "body", "headers", "unique")
SETTING_KEYS = ("users", "duration", "ramp_up")
DEFAULT_SETTINGS = {"users": 10, "duration": 60, "ramp_up": 0}

#: Request variants prepared per step that has placeholders; the generator
#: picks one at random for each request.
VARIANTS_PER_STEP = 256

#: At most this many variants of a ``unique`` step, one per real row.
UNIQUE_VARIANTS_MAX = 4096

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ScenarioStep:
    """One step as written in the file, with the line each field is on."""

    name: str
    method: str
    path: str
    weight: float
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    line: int | None = None
    index: int = 0
    endpoint_line: int | None = None
    unique: bool = False

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"

    def placeholders(self) -> list[str]:
        """Placeholder names in the path and body, in order of appearance."""
        text = self.path + " " + (json.dumps(self.body) if self.body else "")
        seen: list[str] = []
        for name in _PLACEHOLDER.findall(text):
            if name not in seen:
                seen.append(name)
        return seen


@dataclass(frozen=True)
class Scenario:
    """A validated scenario file."""

    name: str
    description: str
    steps: Sequence[ScenarioStep]
    users: int
    duration: float
    ramp_up: float
    path: str


def scenarios_dir() -> Path:
    """BENCH_SCENARIOS_PATH, or ``bench/scenarios``, relative to the project folder."""
    return project_path("BENCH_SCENARIOS_PATH", DEFAULT_SCENARIOS_PATH)


def available(directory: Path | None = None) -> list[str]:
    """Names of the scenarios in ``directory`` (file names without ``.yaml``)."""
    folder = directory or scenarios_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.stem
        for p in folder.iterdir()
        if p.suffix in (".yaml", ".yml") and p.is_file()
    )


def find(name: str, directory: Path | None = None) -> Path:
    """The file of scenario ``name``, or ``BenchInputError`` listing the known ones."""
    folder = directory or scenarios_dir()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or "") or name.startswith("."):
        raise BenchInputError(f"a scenario name is a file name, got {name!r}")
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    known = ", ".join(available(folder)) or "none"
    raise BenchInputError(f"unknown scenario {name!r} in {folder}; available: {known}")


def _line_of(node: Any, key: Any) -> int | None:
    """1-based line of ``key`` in a ruamel mapping or sequence, if known."""
    try:
        if isinstance(key, int):
            return node.lc.item(key)[0] + 1
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return None


def _node_line(node: Any) -> int | None:
    try:
        return node.lc.line + 1
    except AttributeError:
        return None


def _number(
    path: str, node: Any, key: str, where: str, *, minimum: float, strict: bool
) -> float:
    value = node[key]
    line = _line_of(node, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(path, line, where, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ScenarioError(
            path, line, where, f"must be a finite number, got {value!r}"
        )
    if (strict and value <= minimum) or (not strict and value < minimum):
        bound = f"greater than {minimum:g}" if strict else f"at least {minimum:g}"
        raise ScenarioError(path, line, where, f"must be {bound}, got {value!r}")
    return float(value)


def _check_keys(path: str, node: Any, valid: Sequence[str], where: str) -> None:
    for key in node:
        if key not in valid:
            raise ScenarioError(
                path,
                _line_of(node, key),
                f"{where}{key}",
                f"unknown field; valid fields: {', '.join(valid)}",
            )


def parse(text: str, path: str = "<scenario>") -> Scenario:
    """Validate scenario ``text``; raise ``ScenarioError`` naming file, line, field."""
    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(path, line, "(syntax)", str(exc.problem or exc)) from None
    if not isinstance(doc, Mapping):
        raise ScenarioError(
            path, _node_line(doc) or 1, "(top level)", "must be a mapping"
        )
    _check_keys(path, doc, TOP_KEYS, "")

    for key in ("name", "steps"):
        if key not in doc:
            raise ScenarioError(path, 1, key, "is required")
    name = doc["name"]
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(
            path, _line_of(doc, "name"), "name", "must be non-empty text"
        )
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise ScenarioError(
            path, _line_of(doc, "description"), "description", "must be text"
        )

    raw_steps = doc["steps"]
    if (
        not isinstance(raw_steps, Sequence)
        or isinstance(raw_steps, str)
        or not raw_steps
    ):
        raise ScenarioError(
            path, _line_of(doc, "steps"), "steps", "must be a non-empty list of steps"
        )
    steps = [_parse_step(path, raw_steps, i) for i in range(len(raw_steps))]
    names = [s.name for s in steps]
    for i, step in enumerate(steps):
        if names.index(step.name) != i:
            raise ScenarioError(
                path, step.line, f"steps[{i}].name", f"{step.name!r} is used twice"
            )

    settings = dict(DEFAULT_SETTINGS)
    if "settings" in doc and doc["settings"] is not None:
        node = doc["settings"]
        if not isinstance(node, Mapping):
            raise ScenarioError(
                path, _line_of(doc, "settings"), "settings", "must be a mapping"
            )
        _check_keys(path, node, SETTING_KEYS, "settings.")
        if "users" in node:
            users = node["users"]
            if isinstance(users, bool) or not isinstance(users, int) or users <= 0:
                raise ScenarioError(
                    path,
                    _line_of(node, "users"),
                    "settings.users",
                    f"must be a whole number greater than 0, got {users!r}",
                )
            settings["users"] = users
        if "duration" in node:
            settings["duration"] = _number(
                path, node, "duration", "settings.duration", minimum=0, strict=True
            )
        if "ramp_up" in node:
            settings["ramp_up"] = _number(
                path, node, "ramp_up", "settings.ramp_up", minimum=0, strict=False
            )
            if settings["ramp_up"] >= settings["duration"]:
                raise ScenarioError(
                    path,
                    _line_of(node, "ramp_up"),
                    "settings.ramp_up",
                    f"must be shorter than the duration ({settings['duration']:g}s)",
                )
    return Scenario(
        name=name.strip(),
        description=description.strip(),
        steps=steps,
        users=int(settings["users"]),
        duration=float(settings["duration"]),
        ramp_up=float(settings["ramp_up"]),
        path=path,
    )


def _parse_step(path: str, raw_steps: Any, i: int) -> ScenarioStep:
    node = raw_steps[i]
    where = f"steps[{i}]"
    line = _line_of(raw_steps, i)
    if not isinstance(node, Mapping):
        raise ScenarioError(path, line, where, "must be a mapping")
    _check_keys(path, node, STEP_KEYS, f"{where}.")
    for key in ("name", "endpoint", "weight"):
        if key not in node:
            raise ScenarioError(path, line, f"{where}.{key}", "is required")
    name = node["name"]
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(
            path, _line_of(node, "name"), f"{where}.name", "must be non-empty text"
        )
    endpoint = node["endpoint"]
    eline = _line_of(node, "endpoint")
    parts = endpoint.split() if isinstance(endpoint, str) else []
    if len(parts) != 2:
        raise ScenarioError(
            path,
            eline,
            f"{where}.endpoint",
            f"must be 'METHOD /path', got {endpoint!r}",
        )
    method, url_path = parts[0].upper(), parts[1]
    if method not in METHODS:
        raise ScenarioError(
            path,
            eline,
            f"{where}.endpoint",
            f"unknown method {parts[0]!r}; valid: {', '.join(METHODS)}",
        )
    if not url_path.startswith("/"):
        raise ScenarioError(
            path,
            eline,
            f"{where}.endpoint",
            f"path must start with '/', got {url_path!r}",
        )
    weight = _number(path, node, "weight", f"{where}.weight", minimum=0, strict=True)

    body = node.get("body")
    if body is not None and not isinstance(body, (str, Mapping, list)):
        raise ScenarioError(
            path,
            _line_of(node, "body"),
            f"{where}.body",
            "must be a mapping (sent as JSON) or text",
        )
    headers = node.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) for k, v in headers.items()
    ):
        raise ScenarioError(
            path,
            _line_of(node, "headers"),
            f"{where}.headers",
            "must map header names to text",
        )
    unique = node.get("unique", False)
    if not isinstance(unique, bool):
        raise ScenarioError(
            path,
            _line_of(node, "unique"),
            f"{where}.unique",
            f"must be true or false, got {unique!r}",
        )
    step = ScenarioStep(
        name=name.strip(),
        method=method,
        path=url_path,
        weight=weight,
        body=_plain(body),
        headers={str(k): str(v) for k, v in headers.items()},
        line=line,
        index=i,
        endpoint_line=eline,
        unique=unique,
    )
    if unique and not step.placeholders():
        raise ScenarioError(
            path,
            _line_of(node, "unique"),
            f"{where}.unique",
            "needs a {placeholder} in the endpoint or body: it makes each request "
            "use a different real row",
        )
    return step


def _plain(value: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def load(path: Path | str) -> Scenario:
    """Read and validate a scenario file."""
    file_path = Path(path)
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchInputError(
            f"cannot read scenario {file_path}: {exc.strerror}"
        ) from None
    return parse(text, str(file_path))


def _fill_value(template: Any, values: Mapping[str, Any]) -> Any:
    """``template`` with placeholders replaced; ``"{x}"`` alone keeps x's type."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
    if isinstance(template, Mapping):
        return {k: _fill_value(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill_value(v, values) for v in template]
    return template


def _pick(fill: Mapping[str, Sequence[Any]], rng: random.Random) -> dict[str, Any]:
    """One value for each placeholder: a row's columns stay together."""
    chosen: dict[str, Any] = {}
    for key, entries in fill.items():
        if not entries:
            continue
        entry = rng.choice(list(entries))
        if isinstance(entry, Mapping):
            chosen.update(entry)
        else:
            chosen[key] = entry
    return chosen


def _deal(
    fill: Mapping[str, Sequence[Any]],
    needed: Sequence[str],
    rng: random.Random,
    limit: int,
) -> list[dict[str, Any]]:
    """Values for a unique step: row *i* of each shuffled list, no row twice.

    As many as the longest list that fills one of ``needed`` has rows (at most
    ``limit``); shorter lists come round again.
    """
    lists = []
    for key, entries in fill.items():
        names = provided({key: entries})
        if entries and names & set(needed):
            rows = list(entries)
            rng.shuffle(rows)
            lists.append((key, rows))
    count = min(limit, max(len(rows) for _key, rows in lists))
    dealt = []
    for i in range(count):
        chosen: dict[str, Any] = {}
        for key, rows in lists:
            entry = rows[i % len(rows)]
            if isinstance(entry, Mapping):
                chosen.update(entry)
            else:
                chosen[key] = entry
        dealt.append(chosen)
    return dealt


def provided(fill: Mapping[str, Sequence[Any]]) -> set[str]:
    """Placeholder names that ``fill`` can fill."""
    names: set[str] = set()
    for key, entries in fill.items():
        for entry in entries:
            if isinstance(entry, Mapping):
                names.update(entry)
            else:
                names.add(key)
    return names


def build_steps(
    scenario: Scenario,
    fill: Mapping[str, Sequence[Any]] | None = None,
    seed: int | None = None,
) -> list[Step]:
    """The engine's steps, placeholders filled from ``fill``.

    ``fill`` maps a name to real values, e.g. ``{"id": [3, 7, 9]}``; values
    that must stay together (an order and its total) are rows:
    ``{"order": [{"order_id": 5, "amount": "12.50"}]}``. A placeholder nothing
    fills is a ``ScenarioError`` on the step's line. A ``unique`` step gets
    one variant per real row (see ``_deal``), the others
    ``VARIANTS_PER_STEP`` variants of randomly picked rows.
    """
    fill = fill or {}
    have = provided(fill)
    # Which real row a request uses needs spread, not secrecy.
    rng = random.Random(seed)  # noqa: S311
    steps = []
    for step in scenario.steps:
        needed = step.placeholders()
        missing = [n for n in needed if n not in have]
        if missing:
            names = ", ".join("{" + n + "}" for n in missing)
            raise ScenarioError(
                scenario.path,
                step.line,
                f"steps[{step.index}]",
                f"{names} in {step.endpoint!r} has no real values to fill it "
                f"(values were given for: {', '.join(sorted(have)) or 'nothing'})",
            )
        if step.unique:
            choices = _deal(fill, needed, rng, UNIQUE_VARIANTS_MAX)
        elif needed:
            choices = [_pick(fill, rng) for _ in range(VARIANTS_PER_STEP)]
        else:
            choices = [{}]
        variants = []
        for values in choices:
            path = _PLACEHOLDER.sub(lambda m, v=values: str(v[m.group(1)]), step.path)
            body = None
            if step.body is not None:
                filled = _fill_value(step.body, values)
                body = filled if isinstance(filled, str) else json.dumps(filled)
            variants.append(HttpRequest(step.method, path, dict(step.headers), body))
        steps.append(
            Step(
                name=step.name,
                weight=step.weight,
                requests=variants,
                label=step.endpoint,
                unique=step.unique,
            )
        )
    return steps
