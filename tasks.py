"""Every nself-ops command, as an Invoke task.

Run `invoke --list` for the list, `invoke --help TASK` for a task's flags. The same
tasks answer to the nself grammar: `nself scale out api --replicas 3` runs `scale-out`.
Each task checks its input, then runs its playbook (playbooks/<task>.yml) or reads the
environment through a module; `--dry-run` runs the playbook in check and diff mode.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from invoke import Exit, task

from nself_ops import console  # noqa: F401 - messages for bad flags, quiet pipes
from nself_ops import scale as scale_view
from nself_ops import status as status_view
from nself_ops.ansible import AnsibleFailure, run_playbook
from nself_ops.envs import SERVICES, InputError, check_choice, resolve_env

ENV_HELP = "Environment to act on (local, staging, prod); default NSELF_ENV or local."
DRY_RUN_HELP = "Show what would change (check and diff mode) and change nothing."
FORMAT_HELP = "Output format: table or json."


def _env(env: str | None) -> str:
    try:
        return resolve_env(env)
    except InputError as exc:
        raise Exit("Error: %s" % exc, code=2) from None


def _choice(what: str, value: str, valid) -> str:
    try:
        return check_choice(what, value, valid)
    except InputError as exc:
        raise Exit("Error: %s" % exc, code=2) from None


def _play(env: str, playbook: str, extra_vars=None, dry_run: bool = False) -> None:
    """Run a playbook; its output, recap included, goes to the terminal."""
    result = run_playbook(env, playbook, extra_vars=extra_vars, dry_run=dry_run)
    if result.returncode != 0:
        raise Exit(
            "Error: playbook %s failed on %s (exit %d); see the output above"
            % (playbook, env, result.returncode),
            code=result.returncode,
        )


def _status(env: str) -> dict:
    try:
        return status_view.read(env)
    except AnsibleFailure as exc:
        raise Exit("Error: reading the status of %s: %s" % (env, exc), code=1) from None


@task(help={"env": ENV_HELP, "dry_run": DRY_RUN_HELP})
def up(c, env: str | None = None, dry_run: bool = False) -> None:
    """Bring an environment up: PostgreSQL, Redis, the api and nginx, all healthy."""
    _play(_env(env), "up", dry_run=dry_run)


@task(
    help={
        "env": ENV_HELP,
        "purge": "Delete the environment's data and config too.",
        "dry_run": DRY_RUN_HELP,
    }
)
def down(c, env: str | None = None, purge: bool = False, dry_run: bool = False) -> None:
    """Stop every service of an environment; its data is kept unless --purge."""
    _play(_env(env), "down", {"nself_purge": purge}, dry_run=dry_run)


@task(help={"env": ENV_HELP, "format": FORMAT_HELP})
def status(c, env: str | None = None, format: str = "table") -> None:  # noqa: A002
    """Show an environment's services with replicas, health and addresses."""
    env = _env(env)
    _choice("format", format, ("table", "json"))
    current = _status(env)
    if format == "json":
        print(json.dumps(status_view.public(current), indent=2))
    else:
        print(status_view.render(current))
    if current["services"] and not current["up"]:
        raise Exit(code=1)


@task(
    help={
        "env": ENV_HELP,
        "service": "Service whose log to show: " + ", ".join(SERVICES) + ".",
        "lines": "How many of the last lines to show from each instance.",
    }
)
def logs(c, service: str, env: str | None = None, lines: int = 50) -> None:
    """Show the last lines of a service's log (every replica's, one after another)."""
    env = _env(env)
    _choice("service", service, SERVICES)
    if lines < 1:
        raise Exit("Error: --lines must be at least 1, got %d" % lines, code=2)
    current = _status(env)
    entry = next((s for s in current["services"] if s["name"] == service), None)
    if entry is None:
        raise Exit("Error: %s does not run in %s" % (service, env), code=1)
    log_dir = Path(current["state_dir"]) / "logs"
    for instance in entry["instances"]:
        path = log_dir / (instance["name"] + ".log")
        print("==> %s <==" % path)
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            print("(no log yet)")
            continue
        sys.stdout.write("\n".join(text.splitlines()[-lines:]) + "\n")


# --- Benchmarks ---------------------------------------------------------------
# The work is in nself_ops.bench; these tasks resolve the environment (URL, endpoints,
# database), turn bad input and a stack that is down into messages, and print.

BENCH_FORMAT_HELP = "Output format: table or json."


def _bench_call(env: str, fn, *args, **kwargs):
    """Run a bench step; its known errors become messages, not tracebacks."""
    from nself_ops.bench.errors import BenchError, BenchInputError, TargetDownError

    try:
        return fn(*args, **kwargs)
    except TargetDownError as exc:
        raise Exit(
            "Error: environment %s is down or unreachable: %s\n"
            "Bring it up with: invoke up --env %s" % (env, exc, env),
            code=1,
        ) from None
    except (BenchInputError, InputError) as exc:
        raise Exit("Error: %s" % exc, code=2) from None
    except BenchError as exc:
        raise Exit("Error: %s" % exc, code=1) from None
    except AnsibleFailure as exc:
        raise Exit("Error: reading %s's settings: %s" % (env, exc), code=1) from None


def _bench_print(outcome, format: str) -> None:  # noqa: A002
    if format == "json":
        print(json.dumps(outcome.summary, indent=2))
    else:
        print(outcome.text)
    if outcome.record_path is not None:
        print("Saved %s" % outcome.record_path, file=sys.stderr)
        print("Report %s" % outcome.report_path, file=sys.stderr)


def _bench_positive(name: str, value: float) -> None:
    if value <= 0:
        raise Exit("Error: --%s must be greater than 0, got %g" % (name, value), code=2)


def _bench_number(name: str, value, *, whole: bool = False, zero: bool = False):
    """A flag with no default (Invoke passes its text): None, or a checked number.

    Whole numbers must be greater than 0; other numbers greater than 0, or at least 0
    with ``zero``. A bad value is refused naming the flag, the value and the range.
    """
    if value is None:
        return None
    if whole:
        wanted = "a whole number greater than 0"
    else:
        wanted = "a number of at least 0" if zero else "a number greater than 0"
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        number = None
    # Not finite (nan, inf) fails both comparisons.
    if number is None or not 0 <= number < float("inf") or (number == 0 and not zero):
        raise Exit("Error: --%s must be %s, got %s" % (name, wanted, value), code=2)
    return number


@task(
    positional=["endpoint"],
    help={
        "env": ENV_HELP,
        "endpoint": "One endpoint, 'METHOD /path' or '/path' (GET); one listed in the "
        "inventory's nself_bench_endpoints may be named by the end of its path "
        "(/users for GET /api/users); default: every listed endpoint.",
        "concurrent": "Concurrent connections (virtual users).",
        "duration": "Seconds each endpoint is loaded.",
        "rate": "Constant arrival rate in requests per second over all connections; "
        "latency then counts from each request's intended start.",
        "format": BENCH_FORMAT_HELP,
    },
)
def bench_api(  # noqa: PLR0917 - each parameter is a command-line flag
    c,
    endpoint: str = "",
    env: str | None = None,
    concurrent: int = 100,
    duration: float = 60.0,
    rate: float = 0.0,
    format: str = "table",  # noqa: A002
) -> None:
    """Benchmark the API: RPS, avg, P95, P99 and errors per endpoint, and totals."""
    from nself_ops.bench import api as bench_api_module
    from nself_ops.bench import commands
    from nself_ops.bench import target as bench_target

    env = _env(env)
    _choice("format", format, ("table", "json"))
    _bench_positive("concurrent", concurrent)
    _bench_positive("duration", duration)
    if rate < 0:
        raise Exit("Error: --rate must be greater than 0, got %g" % rate, code=2)
    where = _bench_call(env, bench_target.read, env)
    known = [
        e if isinstance(e, str) else e.get("endpoint", "") for e in where.endpoints
    ]
    endpoints = where.endpoints
    if endpoint:
        chosen, note = _bench_call(
            env, bench_api_module.resolve_endpoint, endpoint, where.endpoints
        )
        if note:
            print("Endpoint: %s" % note, file=sys.stderr)
        endpoints = [chosen]
    if not endpoints:
        raise Exit(
            "Error: %s lists no endpoints in nself_bench_endpoints; name one with "
            "--endpoint" % env,
            code=2,
        )
    outcome = _bench_call(
        env,
        commands.run_api,
        env,
        where.url,
        endpoints,
        concurrency=concurrent,
        duration=duration,
        rate=rate or None,
        known=known,
    )
    _bench_print(outcome, format)


@task(
    help={
        "env": ENV_HELP,
        "read": "Read workload (pgbench select-only).",
        "write": "Write workload (pgbench simple-update).",
        "mixed": "Mixed workload (pgbench tpcb-like); the default.",
        "clients": "Concurrent database clients.",
        "duration": "Seconds to run.",
        "connect": "Open a new connection for every transaction.",
        "via": "Connect direct to PostgreSQL or through the pooler (PgBouncer).",
        "format": BENCH_FORMAT_HELP,
    }
)
def bench_db(  # noqa: PLR0917 - each parameter is a command-line flag
    c,
    env: str | None = None,
    read: bool = False,
    write: bool = False,
    mixed: bool = False,
    clients: int = 10,
    duration: float = 60,
    connect: bool = False,
    via: str = "direct",
    format: str = "table",  # noqa: A002
) -> None:
    """Benchmark PostgreSQL with pgbench in a scratch database: TPS and latency."""
    from nself_ops.bench import commands
    from nself_ops.bench import target as bench_target

    env = _env(env)
    _choice("format", format, ("table", "json"))
    _choice("via", via, ("direct", "pooler"))
    flags = (("read", read), ("write", write), ("mixed", mixed))
    chosen = [name for name, on in flags if on]
    if len(chosen) > 1:
        raise Exit(
            "Error: choose one workload of --read, --write and --mixed, got %s"
            % ", ".join("--" + n for n in chosen),
            code=2,
        )
    _bench_positive("clients", clients)
    _bench_positive("duration", duration)
    where = _bench_call(env, bench_target.read, env)
    if where.superuser_password() is None:
        raise Exit(
            "Error: environment %s is not set up (no database secrets in %s)\n"
            "Bring it up with: invoke up --env %s" % (env, where.state_dir, env),
            code=1,
        )
    outcome = _bench_call(
        env,
        commands.run_db,
        env,
        where.db_target(via),
        workload=(chosen or ["mixed"])[0],
        clients=clients,
        duration=duration,
        connect=connect,
        via=via,
        init_target=where.db_target("direct"),
        protected=[where.database],
    )
    _bench_print(outcome, format)


@task(
    help={
        "env": ENV_HELP,
        "scenario": "Scenario name: a YAML file in BENCH_SCENARIOS_PATH.",
        "users": "Virtual users (at least 1); default: the scenario's settings.users.",
        "duration": "Seconds to run (above 0), ramp-up included; default: the "
        "scenario's.",
        "ramp_up": "Seconds over which users start, linearly (0 or more, shorter than "
        "the duration); default: the scenario's.",
        "progress": "Draw the progress bar even when stderr is not a terminal.",
        "format": BENCH_FORMAT_HELP,
    }
)
def bench_load(  # noqa: PLR0917 - each parameter is a command-line flag
    c,
    env: str | None = None,
    scenario: str = "checkout",
    users: int | None = None,
    duration: float | None = None,
    ramp_up: float | None = None,
    progress: bool = False,
    format: str = "table",  # noqa: A002
) -> None:
    """Load-test a scenario of weighted steps with virtual users ramping up."""
    from nself_ops.bench import commands
    from nself_ops.bench import scenario as bench_scenario
    from nself_ops.bench import target as bench_target

    env = _env(env)
    _choice("format", format, ("table", "json"))
    users = _bench_number("users", users, whole=True)
    duration = _bench_number("duration", duration)
    ramp_up = _bench_number("ramp-up", ramp_up, zero=True)
    # Check the scenario before touching the environment, so a typo costs nothing.
    sc = _bench_call(env, bench_scenario.find, scenario)
    plan = _bench_call(env, bench_scenario.load, sc)
    span = plan.duration if duration is None else duration
    ramp = plan.ramp_up if ramp_up is None else ramp_up
    if ramp >= span:
        raise Exit(
            "Error: --ramp-up must be at least 0 and shorter than the duration, got "
            "ramp-up %gs%s and duration %gs%s"
            % (
                ramp,
                " (the scenario's)" if ramp_up is None else "",
                span,
                " (the scenario's)" if duration is None else "",
            ),
            code=2,
        )
    where = _bench_call(env, bench_target.read, env)
    fill = _bench_call(env, bench_target.fetch_fill, where)
    outcome = _bench_call(
        env,
        commands.run_load,
        env,
        where.url,
        scenario,
        fill=fill,
        users=users,
        duration=duration,
        ramp_up=ramp_up,
        progress=True if progress else None,
    )
    _bench_print(outcome, format)


@task(help={"env": ENV_HELP, "format": BENCH_FORMAT_HELP})
def bench_baseline_save(
    c,
    env: str | None = None,
    format: str = "table",  # noqa: A002
) -> None:
    """Save the latest run of each benchmark kind as the environment's baseline."""
    from nself_ops.bench import commands

    env = _env(env)
    _choice("format", format, ("table", "json"))
    _bench_print(_bench_call(env, commands.save_baseline, env), format)


@task(
    help={
        "env": ENV_HELP,
        "with_": "Compare the latest run with the baseline or with the last run.",
        "kind": "Which benchmark to compare: api, db or load.",
        "threshold": "Percent change beyond which a significant slowdown fails.",
        "format": BENCH_FORMAT_HELP,
    }
)
def bench_compare(  # noqa: PLR0917 - each parameter is a command-line flag
    c,
    env: str | None = None,
    with_: str = "baseline",
    kind: str = "api",
    threshold: float = 10.0,
    format: str = "table",  # noqa: A002
) -> None:
    """Compare the latest benchmark with the baseline; exit 1 on a regression.

    Exits 3 when no row could be judged (too few samples, or runs that loaded the
    server differently), so CI does not take "nothing compared" for a pass.
    """
    from nself_ops.bench import commands

    env = _env(env)
    _choice("format", format, ("table", "json"))
    _choice("comparison", with_, ("last", "baseline"))
    _choice("kind", kind, ("api", "db", "load"))
    _bench_positive("threshold", threshold)
    outcome = _bench_call(
        env, commands.run_compare, env, with_=with_, kind=kind, threshold_pct=threshold
    )
    _bench_print(outcome, format)
    if format == "json":
        for warning in outcome.summary["warnings"]:
            print("Warning: %s" % warning, file=sys.stderr)
    if outcome.summary["regression"]:
        raise Exit(code=1)
    if not outcome.summary["judged"]:
        if format == "json":
            print(outcome.summary["conclusion"], file=sys.stderr)
        raise Exit(code=3)


# -- scale ---------------------------------------------------------------------------

SCALE_SERVICE_HELP = "Service to scale: " + ", ".join(SERVICES) + "."


def _whole(name: str, value) -> int | None:
    """A whole-number flag that has no default (Invoke passes it as text)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Exit(
            "Error: invalid value %r for --%s; it takes a whole number" % (value, name),
            code=2,
        ) from None


def _scale_service(service: str) -> str:
    return _choice("service", service, SERVICES)


def _replicas(playbook: str, service: str, replicas, env, dry_run: bool) -> None:
    _play(
        _env(env),
        playbook,
        {
            "scale_service": _scale_service(service),
            "scale_replicas": _whole("replicas", replicas),
        },
        dry_run=dry_run,
    )


def _replicas_help(default: str) -> dict:
    return {
        "service": SCALE_SERVICE_HELP,
        "replicas": "Replica count wanted; default %s." % default,
        "env": ENV_HELP,
        "dry_run": DRY_RUN_HELP,
    }


@task(positional=["service"], help=_replicas_help("one more"))
def scale_out(
    c,
    service: str,
    replicas: int | None = None,
    env: str | None = None,
    dry_run: bool = False,
) -> None:
    """Add replicas of a service behind the load balancer, without downtime."""
    _replicas("scale-out", service, replicas, env, dry_run)


@task(positional=["service"], help=_replicas_help("one fewer"))
def scale_in(
    c,
    service: str,
    replicas: int | None = None,
    env: str | None = None,
    dry_run: bool = False,
) -> None:
    """Remove replicas of a service, draining each before it stops."""
    _replicas("scale-in", service, replicas, env, dry_run)


def _resources(service, memory, cpu) -> dict:
    return {
        "scale_service": _scale_service(service),
        "scale_memory": memory,
        "scale_cpus": cpu,
    }


RESOURCE_HELP = {
    "service": SCALE_SERVICE_HELP,
    "memory": "Memory limit such as 512M or 4G; default one step from the current.",
    "cpu": "CPU limit in CPUs such as 0.5 or 2; default one step from the current.",
    "env": ENV_HELP,
    "dry_run": DRY_RUN_HELP,
}


@task(positional=["service"], help=RESOURCE_HELP)
def scale_up(
    c,
    service: str,
    memory: str | None = None,
    cpu: str | None = None,
    env: str | None = None,
    dry_run: bool = False,
) -> None:
    """Give a service more memory or CPU (without a value: double the current)."""
    _play(_env(env), "scale-up", _resources(service, memory, cpu), dry_run=dry_run)


@task(positional=["service"], help=RESOURCE_HELP)
def scale_down(
    c,
    service: str,
    memory: str | None = None,
    cpu: str | None = None,
    env: str | None = None,
    dry_run: bool = False,
) -> None:
    """Give a service less memory or CPU (without a value: halve the current)."""
    _play(_env(env), "scale-down", _resources(service, memory, cpu), dry_run=dry_run)


@task(
    help={
        "service": "Show only this service.",
        "env": ENV_HELP,
        "format": FORMAT_HELP,
    },
)
def scale_status(
    c,
    service: str | None = None,
    env: str | None = None,
    format: str = "table",  # noqa: A002
) -> None:
    """Show desired and running replicas, limits and live usage per instance."""
    env = _env(env)
    _choice("format", format, ("table", "json"))
    if service is not None:
        _scale_service(service)
    try:
        report = scale_view.read(env, service)
    except AnsibleFailure as exc:
        raise Exit(
            "Error: reading the scaling of %s: %s" % (env, exc), code=1
        ) from None
    if format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(scale_view.render(env, report))


scale_status.body.nself_positional = ["service"]
