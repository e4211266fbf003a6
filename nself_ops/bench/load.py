"""``bench-load``: a scenario of weighted steps with virtual users ramping up."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from . import api, engine, scenario
from .errors import BenchInputError, ScenarioError, UnknownEndpointError

log = logging.getLogger("nself.bench")

STEP_KEYS = (
    "name",
    "endpoint",
    "weight",
    "share_pct",
    "requests",
    "rps",
    "avg_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors_pct",
)


class ProgressBar:
    """A one-line progress bar on a terminal, redrawn in place.

    Shows the elapsed share of the run and how many virtual users the linear
    ramp has started by now. Draws nothing unless the stream is a terminal or
    ``force`` is set, so logs and pipes stay clean.
    """

    def __init__(
        self,
        duration: float,
        users: int,
        ramp_up: float,
        *,
        stream: TextIO | None = None,
        force: bool = False,
        width: int = 30,
    ) -> None:
        self.duration = duration
        self.users = users
        self.ramp_up = ramp_up
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.drawn = 0
        self.last_drawn = -1.0

    def active_users(self, elapsed: float) -> int:
        """Users started after ``elapsed`` seconds of a linear ramp."""
        if self.ramp_up <= 0 or elapsed >= self.ramp_up:
            return self.users
        # User i of n starts at i/n of the ramp, so at time t the first
        # floor(t / ramp * n) + 1 have started.
        return min(self.users, int(elapsed / self.ramp_up * self.users) + 1)

    def line(self, elapsed: float) -> str:
        """The bar's text after ``elapsed`` seconds."""
        share = max(0.0, min(1.0, elapsed / self.duration))
        filled = round(share * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"[{bar}] {share * 100:3.0f}% {min(elapsed, self.duration):5.0f}s/"
            f"{self.duration:g}s  users {self.active_users(elapsed)}/{self.users}"
        )

    def __call__(self, elapsed: float) -> None:
        # A few redraws a second are enough to read and keep a log small.
        if not self.enabled or elapsed - self.last_drawn < 0.25:
            return
        self.last_drawn = elapsed
        self.stream.write("\r" + self.line(elapsed))
        self.stream.flush()
        self.drawn += 1

    def finish(self) -> None:
        """End the bar's line so that what follows starts on a new one."""
        if self.enabled and self.drawn:
            self.stream.write("\r" + self.line(self.duration) + "\n")
            self.stream.flush()


def summarise(
    result: Mapping[str, Any], sc: scenario.Scenario, users: int
) -> dict[str, Any]:
    """The JSON summary of a ``bench-load`` run."""
    total = result["requests"]
    steps = []
    for step in result["steps"]:
        row = dict(step)
        row["share_pct"] = round(100.0 * step["requests"] / total, 2) if total else 0.0
        steps.append({k: row[k] for k in STEP_KEYS})
    return {
        "scenario": sc.name,
        "users": users,
        "duration_s": result["requested_duration_s"],
        "ramp_up_s": result["ramp_up_s"],
        "steps": steps,
        "total_requests": total,
        "success_rate": round(100.0 * (total - result["errors"]) / total, 3)
        if total
        else 0.0,
        "throughput_rps": result["rps"],
        "avg_ms": result["avg_ms"],
        "p50_ms": result["p50_ms"],
        "p95_ms": result["p95_ms"],
        "p99_ms": result["p99_ms"],
        "generator": result["generator"],
    }


def check_endpoints(
    base_url: str, sc: scenario.Scenario, steps: Sequence[engine.Step]
) -> list[engine.Step]:
    """Send one request of each step before the load starts; the steps to load.

    A server that does not answer is a ``TargetDownError`` (the environment is
    down); a step whose path the server does not know (404 or 405) is a
    ``ScenarioError`` on the line of the step's ``endpoint``, so a typo in the
    file is not measured as a fast error page. The variant sent is the last;
    a ``unique`` step (one that succeeds once per row) is loaded without it.
    """
    checked = []
    for written, built in zip(sc.steps, steps, strict=True):
        probe = built.requests[-1]
        try:
            api.preflight(base_url, probe)
        except UnknownEndpointError as exc:
            raise ScenarioError(
                sc.path,
                written.endpoint_line or written.line,
                f"steps[{written.index}].endpoint",
                f"the server answers {exc.status} to {probe.label} "
                f"(from {written.endpoint!r}): no such endpoint",
            ) from None
        if built.unique and len(built.requests) > 1:
            checked.append(dataclasses.replace(built, requests=built.requests[:-1]))
        else:
            checked.append(built)
    return checked


def bench_load(
    base_url: str,
    sc: scenario.Scenario,
    *,
    fill: Mapping[str, Sequence[Any]] | None = None,
    users: int | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
    timeout: float = engine.DEFAULT_TIMEOUT_S,
    sample_interval: float = 1.0,
    seed: int | None = None,
    progress: ProgressBar | bool | None = None,
) -> dict[str, Any]:
    """Run scenario ``sc``; options left ``None`` come from its settings.

    Returns ``{"summary": …, "result": …}``: the public JSON and the engine's
    full figures (per step, per interval) for the result file and report.
    """
    users = sc.users if users is None else users
    duration = sc.duration if duration is None else duration
    ramp_up = sc.ramp_up if ramp_up is None else ramp_up
    engine.check_count("users", users)
    engine.check_positive("duration", duration)
    if ramp_up < 0 or ramp_up >= duration:
        raise BenchInputError(
            f"ramp-up must be at least 0 and shorter than the duration "
            f"({duration:g}s), got {ramp_up:g}"
        )
    steps = scenario.build_steps(sc, fill, seed=seed)
    steps = check_endpoints(base_url, sc, steps)
    bar = (
        progress
        if isinstance(progress, ProgressBar)
        else ProgressBar(duration, users, ramp_up, force=bool(progress))
    )
    log.info(
        "scenario %s: %d users for %gs, ramp-up %gs", sc.name, users, duration, ramp_up
    )
    try:
        result = engine.run_timed(
            base_url,
            steps,
            users,
            duration,
            ramp_up=ramp_up,
            timeout=timeout,
            sample_interval=sample_interval,
            seed=seed,
            progress=bar,
        )
    finally:
        bar.finish()
    result["requested_duration_s"] = duration
    result["scenario"] = sc.name
    return {"summary": summarise(result, sc, users), "result": result}
