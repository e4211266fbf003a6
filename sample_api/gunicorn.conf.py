"""gunicorn settings for one replica of the nself sample API.

Run from the repository root:

    .venv/bin/gunicorn --config sample_api/gunicorn.conf.py --chdir sample_api \\
        nself_sample_api.app:application

Everything that differs between replicas comes from the environment, so one file
serves every replica:

    NSELF_API_BIND              address to listen on (default 127.0.0.1:18101)
    NSELF_API_WORKERS           worker processes (default 1)
    NSELF_API_THREADS           threads per worker (default 8)
    NSELF_API_TIMEOUT           seconds before a silent worker is killed (default 30)
    NSELF_API_GRACEFUL_TIMEOUT  seconds in-flight requests get on stop (default 20)
    NSELF_API_KEEPALIVE         idle seconds a kept-alive connection stays open
                                (default 75)
    NSELF_API_ACCESS_LOG        access log target, "-" for stdout (default: none)
    NSELF_API_LOG_LEVEL         gunicorn and application log level (default info)
    NSELF_API_CONTROL_SOCKET    path of gunicorn's control socket (default: disabled)
    NSELF_REPLICA               replica name, also used for the process title

The application itself reads its own variables (NSELF_API_CONFIG and friends); see
nself_sample_api/app.py.
"""

import os


def _env_int(name: str, default: int, minimum: int, maximum: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {text!r}") from None
    if not minimum <= value <= maximum:
        raise SystemExit(f"{name} must be between {minimum} and {maximum}")
    return value


bind = [os.environ.get("NSELF_API_BIND", "").strip() or "127.0.0.1:18101"]

# gthread: a few processes, each with a thread pool. Database- and sleep-bound
# requests overlap on threads, CPU-bound ones scale only with processes, which is
# exactly the distinction the scaling benchmarks want to show.
worker_class = "gthread"
workers = _env_int("NSELF_API_WORKERS", 1, 1, 64)
threads = _env_int("NSELF_API_THREADS", 8, 1, 256)

# /api/delay may legitimately take 10 s, so both limits sit above that.
timeout = _env_int("NSELF_API_TIMEOUT", 30, 11, 3600)
graceful_timeout = _env_int("NSELF_API_GRACEFUL_TIMEOUT", 20, 1, 3600)

# nginx keeps idle upstream connections open (keepalive_timeout in the upstream
# block, 60 s unless changed). gunicorn must hold them longer than nginx does, so
# that it is always nginx that closes an idle connection; otherwise nginx can reuse
# a connection at the instant gunicorn drops it and answer 502.
keepalive = _env_int("NSELF_API_KEEPALIVE", 75, 1, 3600)

# Access logging is nginx's job in the stack; turn it on here only when debugging a
# replica directly.
accesslog = os.environ.get("NSELF_API_ACCESS_LOG", "").strip() or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms replica=%({x-replica}o)s'
errorlog = "-"
loglevel = os.environ.get("NSELF_API_LOG_LEVEL", "").strip().lower() or "info"

# The heartbeat file is touched constantly; on a disk-backed /tmp that can stall a
# worker, so keep it in memory when the host has /dev/shm. Only gunicorn's own
# per-worker file lives there, created with a random name and mode 0600.
_SHM = "/dev/shm"  # noqa: S108
if os.path.isdir(_SHM):
    worker_tmp_dir = _SHM

# gunicorn's control socket defaults to one fixed path per user, which several
# replicas on one host would fight over. Off unless a per-replica path is given.
_control_socket = os.environ.get("NSELF_API_CONTROL_SOCKET", "").strip()
if _control_socket:
    control_socket = _control_socket
else:
    control_socket_disable = True

_replica = os.environ.get("NSELF_REPLICA", "").strip()
if _replica:
    proc_name = f"nself-api-{_replica}"

# Workers import the application themselves, after the fork, so each opens its own
# database and Redis connections.
preload_app = False
