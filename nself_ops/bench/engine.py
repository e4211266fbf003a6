"""The HTTP load engine: wrk, driven by the Lua scripts in ``lua/``.

Two ways of running it:

* ``run_fast`` — closed loop at full speed for ``bench-api``. wrk sends one
  prepared request per connection again and again and keeps its own
  microsecond latency histogram; the script only counts sends per sample
  interval. This is the path that has to keep up with nginx.
* ``run_timed`` — one connection per wrk thread, every request timed in Lua.
  Needed for a constant arrival rate (latency from each request's intended
  start), for scenarios (statistics per step) and for ramp-up. The cost is a
  thread per connection, so it is capped at ``MAX_TIMED_CONNECTIONS``.

Both return plain dictionaries (see ``summarise_fast`` / ``summarise_timed``)
that the commands turn into tables, JSON and result files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from . import stats
from .errors import BenchInputError, GeneratorError, ToolMissingError

log = logging.getLogger("nself.bench")

#: Upper bound of connections in timed mode: each is a wrk thread with its own
#: LuaJIT state (about 180 kB), and past a thousand thread start-up alone takes
#: seconds on a small machine.
MAX_TIMED_CONNECTIONS = 1000

#: wrk's default request timeout; answers slower than this count as timeouts.
DEFAULT_TIMEOUT_S = 2.0

#: Seconds a run may overrun its duration (start-up, thread joins, done()).
_GRACE_S = 20.0

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

ProgressCallback = Callable[[float], None]


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request the generator sends (the host comes from the target URL)."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise BenchInputError(
                f"unknown HTTP method {self.method!r}; valid: {', '.join(METHODS)}"
            )
        if not self.path.startswith("/"):
            raise BenchInputError(f"a path must start with '/', got {self.path!r}")

    @property
    def label(self) -> str:
        """``METHOD /path`` as the tables show it."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Step:
    """A weighted request kind in timed mode; ``requests`` are its variants.

    Variants are picked at random, unless ``unique``: then connection *i* of *n*
    sends variants *i*, *i + n*, *i + 2n*, … in turn, so no two requests use
    the same variant until a connection has used all of its share.
    """

    name: str
    weight: float
    requests: Sequence[HttpRequest]
    label: str | None = None
    unique: bool = False


def parse_endpoint(text: str) -> HttpRequest:
    """``"GET /api/users"`` or ``"/api/users"`` (GET) as a request.

    Raises ``BenchInputError`` naming the text and the valid methods.
    """
    parts = text.strip().split()
    if len(parts) == 1:
        method, path = "GET", parts[0]
    elif len(parts) == 2:
        method, path = parts[0].upper(), parts[1]
    else:
        raise BenchInputError(f"an endpoint is 'METHOD /path' or '/path', got {text!r}")
    return HttpRequest(method=method, path=path)


def check_positive(name: str, value: float) -> float:
    """``value`` if it is a finite number above zero, else ``BenchInputError``."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BenchInputError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise BenchInputError(f"{name} must be greater than zero, got {value}")
    return value


def check_count(name: str, value: int) -> int:
    """``value`` if it is a whole number above zero, else ``BenchInputError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BenchInputError(f"{name} must be a whole number above 0, got {value!r}")
    return value


def wrk_binary() -> str:
    """Path of wrk, or ``ToolMissingError`` saying how to get it."""
    found = shutil.which("wrk")
    if not found:
        raise ToolMissingError("wrk is not installed; install the 'wrk' package")
    return found


def _lua(value: Any) -> str:
    """``value`` written as a Lua literal (strings byte-exact)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot write {value} to Lua")
        return repr(value)
    if isinstance(value, str):
        out = []
        for byte in value.encode("utf-8"):
            char = chr(byte)
            if char.isalnum() or char in " /-_.:,;=+*()[]{}<>!?@#$%^&|~'`":
                out.append(char)
            else:
                out.append(f"\\{byte:03d}")
        return '"' + "".join(out) + '"'
    if isinstance(value, Mapping):
        items = ", ".join(f"[{_lua(str(k))}] = {_lua(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to Lua")


def _request_spec(req: HttpRequest) -> dict[str, Any]:
    headers = dict(req.headers)
    if req.body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return {
        "method": req.method,
        "path": req.path,
        "headers": headers,
        "body": req.body,
    }


def _host_cpu() -> tuple[float, float]:
    """Busy and total jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [float(x) for x in fields[:8]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    total = sum(values)
    return total - idle, total


@dataclass
class WrkRun:
    """What one wrk process reported, with what it cost."""

    output: dict[str, Any]
    wall_s: float
    cpu_s: float
    threads: int
    host_busy_pct: float
    stderr: str


def _run_wrk(
    script: str,
    spec: dict[str, Any],
    base_url: str,
    *,
    threads: int,
    connections: int,
    duration: float,
    timeout: float,
    progress: ProgressCallback | None = None,
    launcher: Sequence[str] = (),
) -> WrkRun:
    """Run wrk once with ``script`` (a file in ``lua/``) and read its JSON output.

    ``launcher`` is a command that wrk is run under and that replaces itself
    with it, such as ``("chrt", "-f", "10")``: on a busy host a higher
    scheduling class or priority keeps other work from delaying wrk's reading
    of answers, which would otherwise show up as latency.

    wrk takes whole seconds. For a fractional ``duration`` it is given the
    next whole second and stopped with SIGINT (after which it reports as at
    the end of a run) once ``duration`` has passed since its clock started:
    the script notes that moment when the last thread is ready.
    """
    binary = wrk_binary()
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BenchInputError(
            f"target URL must be http(s)://host[:port], got {base_url!r}"
        )
    lua_dir = resources.files("nself_ops.bench") / "lua"
    with tempfile.TemporaryDirectory(prefix="nself-bench-") as tmp:
        script_path = os.path.join(tmp, "load.lua")
        with open(script_path, "w", encoding="utf-8") as fh:
            fh.write((lua_dir / "common.lua").read_text(encoding="utf-8"))
            fh.write("\n")
            fh.write((lua_dir / script).read_text(encoding="utf-8"))
        spec_path = os.path.join(tmp, "spec.lua")
        out_path = os.path.join(tmp, "out.json")
        ready_path = os.path.join(tmp, "ready")
        env = dict(
            os.environ,
            NSELF_BENCH_SPEC=spec_path,
            NSELF_BENCH_OUT=out_path,
            NSELF_BENCH_READY=ready_path,
        )
        whole = max(1, math.ceil(duration))
        url = f"{parts.scheme}://{parts.netloc}/"
        argv = [
            binary,
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{whole}s",
            "--timeout",
            f"{timeout:g}s",
            "-s",
            script_path,
            url,
        ]
        argv = [*launcher, *argv]
        log.info("running %s", " ".join(argv))
        spec = dict(spec, origin=time.monotonic(), threads=threads)
        with open(spec_path, "w", encoding="utf-8") as fh:
            fh.write("return " + _lua(spec) + "\n")

        busy0, total0 = _host_cpu()
        started = time.monotonic()
        with open(os.path.join(tmp, "stderr"), "w+b") as err_fh:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err_fh,
                cwd=tmp,
            )
            rusage = _wait_with_rusage(
                proc,
                whole + _GRACE_S,
                started,
                progress,
                stop=(ready_path, duration) if whole != duration else None,
            )
            wall = time.monotonic() - started
            err_fh.seek(0)
            stderr = err_fh.read().decode("utf-8", "replace").strip()
        busy1, total1 = _host_cpu()

        if proc.returncode != 0 or not os.path.exists(out_path):
            raise GeneratorError(
                f"wrk exited with status {proc.returncode}: {stderr or 'no output'}"
            )
        with open(out_path, encoding="utf-8") as fh:
            try:
                output = json.load(fh)
            except json.JSONDecodeError as exc:
                raise GeneratorError(
                    f"wrk's script wrote unreadable JSON: {exc}"
                ) from None

    host_busy = 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0
    return WrkRun(
        output=output,
        wall_s=wall,
        cpu_s=rusage.ru_utime + rusage.ru_stime,
        threads=threads,
        host_busy_pct=host_busy,
        stderr=stderr,
    )


def _ready_at(path: str) -> float | None:
    """The monotonic time the script wrote to ``path``, once it is there."""
    try:
        with open(path, encoding="ascii") as fh:
            return float(fh.read())
    except (OSError, ValueError):
        return None


def _wait_with_rusage(
    proc: subprocess.Popen,
    limit_s: float,
    started: float,
    progress: ProgressCallback | None,
    stop: tuple[str, float] | None = None,
) -> Any:
    """Reap ``proc`` and return its resource usage; kill it past ``limit_s``.

    ``os.wait4`` is used instead of ``Popen.wait`` because it hands back the
    child's CPU time, which is how saturation of the generator is judged.
    ``stop`` is ``(ready file, seconds)``: SIGINT that many seconds after the
    time in the file, which ends wrk's run early and cleanly.
    """
    deadline = started + limit_s
    stop_at = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return rusage
        now = time.monotonic()
        if progress is not None:
            progress(now - started)
        if stop is not None and stop_at is None:
            ready = _ready_at(stop[0])
            if ready is not None:
                stop_at = ready + stop[1]
        if stop_at is not None and now >= stop_at:
            proc.send_signal(signal.SIGINT)
            stop, stop_at = None, None
        if now > deadline:
            log.warning("wrk overran its duration by %.0fs; stopping it", limit_s)
            proc.send_signal(signal.SIGKILL)
            _pid, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise GeneratorError(f"wrk did not finish within {limit_s:.0f}s")
        pause = 0.05 if stop_at is None else min(0.05, max(0.001, stop_at - now))
        time.sleep(pause)


def generator_verdict(
    run: WrkRun,
    lag: Mapping[str, float] | None = None,
    rate: float = 0.0,
    achieved_rps: float = 0.0,
) -> dict[str, Any]:
    """Whether the generator, not the server, limited the run, and why.

    Judged from wrk's CPU time against the wall time of the run (all threads
    busy, or the machine out of CPU with the generator holding at least one
    core's worth) and, at a fixed rate, from how far sends fell behind the
    schedule for reasons of the generator's own.
    """
    ncpu = os.cpu_count() or 1
    cpu_pct = 100.0 * run.cpu_s / run.wall_s if run.wall_s > 0 else 0.0
    reasons: list[str] = []
    usable = min(run.threads, ncpu)
    if cpu_pct >= 90.0 * usable:
        reasons.append(
            f"wrk used {cpu_pct:.0f}% CPU, all that its {run.threads} thread(s) "
            f"can get on {ncpu} CPU(s)"
        )
    elif run.host_busy_pct >= 95.0 and cpu_pct >= 80.0:
        reasons.append(
            f"the machine's CPUs were {run.host_busy_pct:.0f}% busy and wrk "
            f"needed {cpu_pct:.0f}% of them, so it competed with the server"
        )
    verdict: dict[str, Any] = {
        "saturated": False,
        "cpu_percent": round(cpu_pct, 1),
        "host_cpu_percent": round(run.host_busy_pct, 1),
        "threads": run.threads,
        "cpus": ncpu,
    }
    if rate > 0 and lag is not None:
        verdict["target_rate"] = rate
        verdict["achieved_rate"] = round(achieved_rps, 1)
        verdict["schedule_lag_avg_ms"] = round(lag["avg_ms"], 3)
        verdict["schedule_lag_p99_ms"] = round(lag["p99_ms"], 3)
        verdict["schedule_lag_max_ms"] = round(lag["max_ms"], 3)
        verdict["backlogged_pct"] = round(lag["backlogged_pct"], 2)
        # Timer resolution is one millisecond, so a few are normal; more than
        # that at the 99th percentile means sends left late on our side.
        if lag["p99_ms"] > 5.0:
            reasons.append(
                f"1% of requests left more than {lag['p99_ms']:.1f} ms after "
                "their connection was free and their start was due"
            )
    verdict["saturated"] = bool(reasons)
    verdict["reasons"] = reasons
    return verdict


def _sample_rows(slots: Mapping[int, float], interval: float) -> list[dict[str, float]]:
    """Whole sample intervals, first and last dropped as partly outside the run.

    An interval in which nothing happened is a sample of zero, not a gap.
    """
    if not slots:
        return []
    first, last = min(slots), max(slots)
    return [
        {"t": round((k - first) * interval, 3), "requests": slots.get(k, 0)}
        for k in range(first + 1, last)
    ]


def thread_count(connections: int, limit: int) -> int:
    """wrk threads for ``connections``: the largest divisor of it up to ``limit``.

    wrk gives each thread connections/threads connections, rounded down, so a
    thread count that does not divide the connections would run fewer than
    asked (5 on 2 threads runs 4).
    """
    limit = max(1, min(limit, connections))
    return next(t for t in range(limit, 0, -1) if connections % t == 0)


def run_fast(
    base_url: str,
    request: HttpRequest,
    connections: int,
    duration: float,
    *,
    threads: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    sample_interval: float = 1.0,
    progress: ProgressCallback | None = None,
    launcher: Sequence[str] = (),
) -> dict[str, Any]:
    """Closed-loop load at full speed on one endpoint; see ``summarise_fast``."""
    connections = check_count("concurrency", connections)
    check_positive("duration", duration)
    check_positive("timeout", timeout)
    check_positive("sample interval", sample_interval)
    limit = (os.cpu_count() or 1) if threads is None else int(threads)
    threads = thread_count(connections, limit)
    spec = dict(
        _request_spec(request),
        duration=float(duration),
        timeout=float(timeout),
        sample_interval=float(sample_interval),
    )
    run = _run_wrk(
        "fast.lua",
        spec,
        base_url,
        threads=threads,
        connections=connections,
        duration=duration,
        timeout=timeout,
        progress=progress,
        launcher=launcher,
    )
    return summarise_fast(run, request.label, connections, sample_interval)


def summarise_fast(
    run: WrkRun, label: str, connections: int, sample_interval: float
) -> dict[str, Any]:
    """The figures of a fast run, in the shape every command shares.

    Errors by kind: ``http`` (status 400 and above), ``timeout`` (answers later
    than the timeout, plus requests sent early enough to have been answered
    and never answered), ``connect``, ``read`` and ``write`` (wrk reports a
    refused connection as a failed write).
    """
    out = run.output
    completed = int(out["requests"])
    errors = out["errors"]
    # Unanswered requests that had the whole timeout to get an answer. wrk
    # cannot say which connection an answer belongs to, so this counts them
    # exactly when every connection hangs and under-counts when only some do.
    hung = max(0, int(out["sent_early"]) - completed)
    kinds = {
        "http": int(errors["status"]),
        "timeout": int(errors["timeout"]) + hung,
        "connect": int(errors["connect"]),
        "read": int(errors["read"]),
        "write": int(errors["write"]),
    }
    failed = kinds["connect"] + kinds["read"] + kinds["write"] + hung
    attempts = completed + failed
    # A late answer is both completed and an error, so errors count the
    # completed ones flagged http or timeout plus every failed attempt.
    bad = min(attempts, kinds["http"] + int(errors["timeout"]) + failed)
    duration_s = int(out["duration_us"]) / 1e6
    lat = out["latency"]
    grid = lat["quantiles"] if isinstance(lat["quantiles"], list) else []
    slots = {int(k): float(v) for k, v in dict(out["sends"] or {}).items()}
    samples = _sample_rows(slots, sample_interval)
    for row in samples:
        row["rps"] = round(row["requests"] / sample_interval, 1)
    return {
        "endpoint": label,
        "mode": "closed",
        "connections": connections,
        "duration_s": round(duration_s, 3),
        "requests": attempts,
        "completed": completed,
        "rps": round(completed / duration_s, 1) if duration_s > 0 else 0.0,
        "avg_ms": round(float(lat["mean"]) / 1000.0, 3) if completed else 0.0,
        "p50_ms": round(stats.grid_quantile(grid, 50) / 1000.0, 3),
        "p95_ms": round(stats.grid_quantile(grid, 95) / 1000.0, 3),
        "p99_ms": round(stats.grid_quantile(grid, 99) / 1000.0, 3),
        "max_ms": round(float(lat["max"]) / 1000.0, 3) if completed else 0.0,
        "errors": bad,
        "errors_pct": round(100.0 * bad / attempts, 3) if attempts else 0.0,
        "error_kinds": kinds,
        "latency_quantiles_ms": [[q, v / 1000.0] for q, v in grid],
        "sample_interval_s": sample_interval,
        "samples": samples,
        "generator": generator_verdict(run),
    }


def run_timed(
    base_url: str,
    steps: Sequence[Step],
    connections: int,
    duration: float,
    *,
    rate: float = 0.0,
    ramp_up: float = 0.0,
    timeout: float = DEFAULT_TIMEOUT_S,
    sample_interval: float = 1.0,
    seed: int | None = None,
    progress: ProgressCallback | None = None,
    launcher: Sequence[str] = (),
) -> dict[str, Any]:
    """Load with every request timed in Lua; see ``summarise_timed``.

    ``rate`` > 0 sends at that many requests per second in total, spread over
    the connections, with latency counted from each intended start.
    ``ramp_up`` starts the connections one after another over that many
    seconds. Raises ``BenchInputError`` for values out of range.
    """
    connections = check_count("concurrency", connections)
    if connections > MAX_TIMED_CONNECTIONS:
        raise BenchInputError(
            f"at most {MAX_TIMED_CONNECTIONS} connections when every request is "
            f"timed (a fixed rate, a scenario or a ramp-up), got {connections}"
        )
    check_positive("duration", duration)
    check_positive("timeout", timeout)
    check_positive("sample interval", sample_interval)
    if rate:
        check_positive("rate", rate)
    if ramp_up < 0 or ramp_up >= duration:
        raise BenchInputError(
            f"ramp-up must be at least 0 and shorter than the duration "
            f"({duration:g}s), got {ramp_up:g}"
        )
    if not steps:
        raise BenchInputError("timed load needs at least one step")
    spec = {
        "connections": connections,
        "rate": float(rate),
        "ramp_up": float(ramp_up),
        "duration": float(duration),
        "timeout": float(timeout),
        "sample_interval": float(sample_interval),
        "hist_k": stats.HIST_K,
        "seed": int(seed if seed is not None else time.time_ns() % 1_000_000_007),
        "steps": [
            {
                "name": s.name,
                "weight": float(s.weight),
                "unique": bool(s.unique),
                "requests": [_request_spec(r) for r in s.requests],
            }
            for s in steps
        ],
    }
    run = _run_wrk(
        "timed.lua",
        spec,
        base_url,
        threads=connections,
        connections=connections,
        duration=duration,
        timeout=timeout,
        progress=progress,
        launcher=launcher,
    )
    return summarise_timed(
        run,
        steps,
        connections=connections,
        rate=rate,
        ramp_up=ramp_up,
        sample_interval=sample_interval,
    )


def _step_figures(raw: Mapping[str, Any], duration_s: float) -> dict[str, Any]:
    hist = {int(k): int(v) for k, v in dict(raw["hist"] or {}).items()}
    answered = int(raw["n"])
    # Lost to a transport failure, or still unanswered at the end after
    # waiting longer than the timeout.
    failed = int(raw["failed"]) + int(raw["hung"])
    attempts = answered + failed
    bad = int(raw["errors"]) + failed
    return {
        "requests": attempts,
        "completed": answered,
        "rps": round(answered / duration_s, 1) if duration_s > 0 else 0.0,
        "avg_ms": round(float(raw["lat_sum"]) / answered / 1000.0, 3)
        if answered
        else 0.0,
        "p50_ms": round(stats.hist_quantile(hist, 50) / 1000.0, 3),
        "p95_ms": round(stats.hist_quantile(hist, 95) / 1000.0, 3),
        "p99_ms": round(stats.hist_quantile(hist, 99) / 1000.0, 3),
        "max_ms": round(stats.hist_quantile(hist, 100) / 1000.0, 3),
        "errors": bad,
        "errors_pct": round(100.0 * bad / attempts, 3) if attempts else 0.0,
        "status": {
            "2xx": int(raw["s2"]),
            "3xx": int(raw["s3"]),
            "4xx": int(raw["s4"]),
            "5xx": int(raw["s5"]),
            "other": int(raw["other"]),
        },
        "timeouts": int(raw["timeouts"]),
        "failed": failed,
        "in_flight": int(raw.get("in_flight", 0)),
        "hist": hist,
    }


def summarise_timed(
    run: WrkRun,
    steps: Sequence[Step],
    *,
    connections: int,
    rate: float,
    ramp_up: float,
    sample_interval: float,
) -> dict[str, Any]:
    """The figures of a timed run: per step, in total, and per sample interval."""
    out = run.output
    duration_s = int(out["duration_us"]) / 1e6
    raw_steps = out["steps"] if isinstance(out["steps"], list) else []
    per_step = []
    merged_hist: dict[int, int] = {}
    totals = {
        "requests": 0,
        "completed": 0,
        "errors": 0,
        "lat_sum": 0.0,
        "timeouts": 0,
    }
    status_total = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "other": 0}
    for step, raw in zip(steps, raw_steps, strict=False):
        figures = _step_figures(raw, duration_s)
        for bucket, count in figures["hist"].items():
            merged_hist[bucket] = merged_hist.get(bucket, 0) + count
        totals["requests"] += figures["requests"]
        totals["completed"] += figures["completed"]
        totals["errors"] += figures["errors"]
        totals["lat_sum"] += float(raw["lat_sum"])
        totals["timeouts"] += figures["timeouts"]
        for key in status_total:
            status_total[key] += figures["status"][key]
        figures["name"] = step.name
        figures["weight"] = step.weight
        figures["endpoint"] = step.label or ", ".join(
            sorted({r.label for r in step.requests})
        )
        per_step.append(figures)

    # Per-interval rows: one per (interval, step), and totals per interval.
    cells = out["samples"] if isinstance(out["samples"], list) else []
    by_slot: dict[int, dict[int, Mapping[str, Any]]] = {}
    for cell in cells:
        by_slot.setdefault(int(cell["slot"]), {})[int(cell["step"])] = cell
    slot_counts = {
        slot: sum(c["n"] for c in row.values()) for slot, row in by_slot.items()
    }
    rows = _sample_rows(slot_counts, sample_interval)
    first = min(by_slot) if by_slot else 0
    for row in rows:
        slot = first + round(row["t"] / sample_interval)
        cells_here = by_slot.get(slot, {})
        lat_n = sum(c["lat_n"] for c in cells_here.values())
        lat_sum = sum(c["lat_sum"] for c in cells_here.values())
        row["rps"] = round(row["requests"] / sample_interval, 1)
        row["errors"] = sum(c["errors"] for c in cells_here.values())
        row["avg_ms"] = round(lat_sum / lat_n / 1000.0, 3) if lat_n else None
        row["steps"] = {
            per_step[idx - 1]["name"]: {
                "requests": c["n"],
                "errors": c["errors"],
                "avg_ms": round(c["lat_sum"] / c["lat_n"] / 1000.0, 3)
                if c["lat_n"]
                else None,
            }
            for idx, c in cells_here.items()
            if 0 < idx <= len(per_step)
        }

    lag_raw = out["lag"]
    lag_hist = {int(k): int(v) for k, v in dict(lag_raw["hist"] or {}).items()}
    issued = int(out["issued"])
    lag = {
        "avg_ms": float(lag_raw["sum"]) / lag_raw["n"] / 1000.0 if lag_raw["n"] else 0,
        "p99_ms": stats.hist_quantile(lag_hist, 99) / 1000.0 if lag_hist else 0.0,
        "max_ms": float(lag_raw["max"]) / 1000.0,
        "backlogged_pct": 100.0 * int(out["backlogged"]) / issued if issued else 0.0,
    }
    completed = totals["completed"]
    achieved = completed / duration_s if duration_s > 0 else 0.0
    attempts = totals["requests"]
    errors = totals["errors"]
    for figures in per_step:
        figures.pop("hist")
    return {
        "mode": "rate" if rate > 0 else "closed",
        "connections": connections,
        "rate": rate,
        "ramp_up_s": ramp_up,
        "duration_s": round(duration_s, 3),
        "requests": attempts,
        "completed": completed,
        "rps": round(achieved, 1),
        "avg_ms": round(totals["lat_sum"] / completed / 1000.0, 3) if completed else 0,
        "p50_ms": round(stats.hist_quantile(merged_hist, 50) / 1000.0, 3),
        "p95_ms": round(stats.hist_quantile(merged_hist, 95) / 1000.0, 3),
        "p99_ms": round(stats.hist_quantile(merged_hist, 99) / 1000.0, 3),
        "max_ms": round(stats.hist_quantile(merged_hist, 100) / 1000.0, 3),
        "errors": errors,
        "errors_pct": round(100.0 * errors / attempts, 3) if attempts else 0.0,
        "error_kinds": {
            "http": status_total["4xx"] + status_total["5xx"] + status_total["other"],
            "timeout": totals["timeouts"],
            "connect": int(out["errors"]["connect"]),
            "read": int(out["errors"]["read"]),
            "write": int(out["errors"]["write"]),
        },
        "status": status_total,
        "steps": per_step,
        "latency_quantiles_ms": _hist_grid_ms(merged_hist),
        "sample_interval_s": sample_interval,
        "samples": rows,
        "generator": generator_verdict(run, lag, rate, achieved),
    }


def _hist_grid_ms(hist: Mapping[int, int]) -> list[list[float]]:
    """A percentile grid (1..99, 99.9, 99.99, 100) from a log histogram, in ms."""
    if not hist:
        return []
    points = [float(p) for p in range(1, 100)] + [99.9, 99.99, 100.0]
    return [[p, round(stats.hist_quantile(hist, p) / 1000.0, 4)] for p in points]
