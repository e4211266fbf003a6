"""``bench-api``: load each endpoint of an environment in turn and sum up."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from . import engine
from .engine import HttpRequest
from .errors import BenchInputError, TargetDownError, UnknownEndpointError

log = logging.getLogger("nself.bench")

#: The keys of one endpoint in the JSON summary, in order.
ENDPOINT_KEYS = (
    "endpoint",
    "requests",
    "rps",
    "avg_ms",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "errors_pct",
)


def as_request(item: str | HttpRequest | dict[str, Any]) -> HttpRequest:
    """An endpoint from the inventory list: ``"GET /path"``, ``"/path"`` or a map.

    A map has ``endpoint`` and optionally ``body`` (text, or a mapping or list
    sent as JSON) and ``headers``. Raises ``BenchInputError`` for anything else.
    """
    if isinstance(item, HttpRequest):
        return item
    if isinstance(item, str):
        return engine.parse_endpoint(item)
    if isinstance(item, dict) and isinstance(item.get("endpoint"), str):
        base = engine.parse_endpoint(item["endpoint"])
        body = item.get("body")
        headers = item.get("headers") or {}
        if isinstance(body, (Mapping, list)):
            body = json.dumps(body)
        elif body is not None and not isinstance(body, str):
            raise BenchInputError(
                f"body of {base.label} must be text or a mapping, "
                f"got {type(body).__name__}"
            )
        return HttpRequest(base.method, base.path, dict(headers), body)
    raise BenchInputError(
        f"an endpoint is 'METHOD /path' or a map with 'endpoint', got {item!r}"
    )


def label_of(item: str | HttpRequest | dict[str, Any]) -> str:
    """``METHOD /path`` of an endpoint as the inventory lists it."""
    return as_request(item).label


def resolve_endpoint(
    given: str, listed: Sequence[str | HttpRequest | dict[str, Any]]
) -> tuple[str | HttpRequest | dict[str, Any], str | None]:
    """The endpoint ``given`` on the command line, and a note when it was resolved.

    One that is listed (same method and path) is the listed entry, body and
    headers included. One that is not, and whose path does not start with
    ``/api``, resolves to the listed endpoint of the same method whose path
    ends with it, when exactly one does: ``/users`` is ``GET /api/users``.
    Otherwise it is used as given (the server's answer decides whether it
    exists); several candidates are a ``BenchInputError`` naming them.
    """
    wanted = engine.parse_endpoint(given)
    for item in listed:
        if label_of(item) == wanted.label:
            return item, None
    if wanted.path == "/api" or wanted.path.startswith(("/api/", "/api?")):
        return given, None
    matches = [
        item
        for item in listed
        if (req := as_request(item)).method == wanted.method
        and req.path.endswith(wanted.path)
    ]
    if len(matches) == 1:
        label = label_of(matches[0])
        return matches[0], f"{given.strip()} is {label} (listed in the inventory)"
    if matches:
        raise BenchInputError(
            f"endpoint {given.strip()!r} could be any of "
            f"{', '.join(label_of(m) for m in matches)}; name one of them"
        )
    return given, None


def preflight(
    base_url: str,
    request: HttpRequest,
    known: Sequence[str] = (),
    timeout: float = 5.0,
) -> int:
    """Send one request before loading an endpoint; return its status.

    Raises ``TargetDownError`` when nothing answers (refused, unreachable or
    silent) and ``UnknownEndpointError`` when the server says the endpoint does
    not exist (404 or 405), so a typo is not measured as a fast error page.
    """
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    conn_cls = (
        http.client.HTTPSConnection
        if parts.scheme == "https"
        else http.client.HTTPConnection
    )
    conn = conn_cls(host, port, timeout=timeout)
    headers = dict(request.headers)
    if request.body is not None:
        headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(request.method, request.path, body=request.body, headers=headers)
        status = conn.getresponse().status
    except ConnectionRefusedError:
        raise TargetDownError(
            f"nothing listens at {host}:{port} (connection refused); "
            "is the environment up?"
        ) from None
    except TimeoutError:
        raise TargetDownError(
            f"{host}:{port} did not answer {request.label} within {timeout:g}s; "
            "is the environment up?"
        ) from None
    except OSError as exc:
        raise TargetDownError(
            f"cannot reach {host}:{port}: {exc.strerror or exc}; is the environment up?"
        ) from None
    finally:
        conn.close()
    if status in (404, 405):
        hint = f"; known endpoints: {', '.join(known)}" if known else ""
        raise UnknownEndpointError(
            f"unknown endpoint {request.label}: the server answers {status}{hint}",
            request.label,
            status,
        )
    return status


def _aggregate_generator(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One generator verdict for the whole run: saturated if any endpoint was."""
    if not results:
        return {"saturated": False, "reasons": []}
    verdicts = [r["generator"] for r in results]
    out: dict[str, Any] = {
        "saturated": any(v["saturated"] for v in verdicts),
        "cpu_percent": max(v["cpu_percent"] for v in verdicts),
        "host_cpu_percent": max(v["host_cpu_percent"] for v in verdicts),
        "threads": max(v["threads"] for v in verdicts),
        "cpus": verdicts[0]["cpus"],
        "reasons": [
            f"{r['endpoint']}: {reason}"
            for r in results
            for reason in r["generator"]["reasons"]
        ],
    }
    for key in ("target_rate", "achieved_rate"):
        if key in verdicts[0]:
            out[key] = verdicts[0][key]
    for key in ("schedule_lag_p99_ms", "schedule_lag_max_ms", "backlogged_pct"):
        if key in verdicts[0]:
            out[key] = max(v[key] for v in verdicts)
    return out


def summarise(
    results: Sequence[dict[str, Any]], duration: float, concurrency: int
) -> dict[str, Any]:
    """The JSON summary of a ``bench-api`` run, from per-endpoint results."""
    total = sum(r["requests"] for r in results)
    errors = sum(r["errors"] for r in results)
    completed = sum(r["completed"] for r in results)
    measured = sum(r["duration_s"] for r in results)
    return {
        "duration_s": duration,
        "concurrency": concurrency,
        "endpoints": [{k: r[k] for k in ENDPOINT_KEYS} for r in results],
        "total_requests": total,
        "success_rate": round(100.0 * (total - errors) / total, 3) if total else 0.0,
        # Endpoints run one after another, so the whole run's throughput is
        # what was answered over the time spent measuring.
        "throughput_rps": round(completed / measured, 1) if measured else 0.0,
        "generator": _aggregate_generator(results),
    }


def bench_api(
    base_url: str,
    endpoints: Sequence[str | HttpRequest | dict[str, Any]],
    *,
    concurrency: int = 100,
    duration: float = 60.0,
    rate: float | None = None,
    threads: int | None = None,
    timeout: float = engine.DEFAULT_TIMEOUT_S,
    sample_interval: float = 1.0,
    known: Sequence[str] = (),
    progress: engine.ProgressCallback | None = None,
    launcher: Sequence[str] = (),
) -> dict[str, Any]:
    """Load every endpoint in turn; return ``{"summary": …, "endpoints": […]}``.

    ``launcher`` is passed to the engine (see ``engine._run_wrk``).
    ``summary`` is the public JSON shape; ``endpoints`` holds everything else
    (errors by kind, per-interval samples, latency percentiles) for the result
    file, the comparison and the HTML report.
    """
    engine.check_count("concurrency", concurrency)
    engine.check_positive("duration", duration)
    if rate is not None:
        engine.check_positive("rate", rate)
    requests = [as_request(e) for e in endpoints]
    if not requests:
        raise BenchInputError("no endpoints to benchmark")
    for req in requests:
        preflight(base_url, req, known=known)

    results = []
    for req in requests:
        log.info(
            "loading %s for %gs with %d connections", req.label, duration, concurrency
        )
        if rate:
            step = engine.Step(name=req.label, weight=1.0, requests=[req])
            result = engine.run_timed(
                base_url,
                [step],
                concurrency,
                duration,
                rate=rate,
                timeout=timeout,
                sample_interval=sample_interval,
                progress=progress,
                launcher=launcher,
            )
            result["endpoint"] = req.label
            result.pop("steps", None)
        else:
            result = engine.run_fast(
                base_url,
                req,
                concurrency,
                duration,
                threads=threads,
                timeout=timeout,
                sample_interval=sample_interval,
                progress=progress,
                launcher=launcher,
            )
        results.append(result)
    return {"summary": summarise(results, duration, concurrency), "endpoints": results}
