"""Talk to an environment's own supervisord over its unix socket.

Every environment runs one supervisord with its config, socket, pid file and logs in
the environment's state folder, so environments never share a process manager with
each other or with the system.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import xmlrpc.client

SUPERVISORD_CONF = """\
; Written by nself-ops for the {env} environment.
[unix_http_server]
file={run_dir}/supervisor.sock
chmod=0700

[supervisord]
logfile={log_dir}/supervisord.log
logfile_maxbytes=10MB
logfile_backups=3
pidfile={run_dir}/supervisord.pid
childlogdir={log_dir}
nodaemon=false
silent=true
minfds=4096

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run_dir}/supervisor.sock

[include]
files = {programs_dir}/*.conf
"""

# Process states supervisor reports; STARTING counts as alive so a restart in progress
# is not mistaken for a crash.
ALIVE_STATES = ("RUNNING", "STARTING")


class SupervisorError(Exception):
    """A supervisor call failed; the message names the call and the cause."""


class _UnixTransport(xmlrpc.client.Transport):
    """An XML-RPC transport over a unix socket (supervisor's own needs a newer API)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host):  # noqa: ANN001 - signature set by the base class
        import http.client

        path, timeout = self._path, self._timeout

        class _Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(path)
                self.sock = sock

        return _Conn("localhost")


class Supervisor:
    """One environment's supervisord: its files, its process and its RPC interface."""

    def __init__(self, state_dir: str, env: str = "") -> None:
        self.state_dir = state_dir
        self.env = env or os.path.basename(state_dir.rstrip("/"))
        self.dir = os.path.join(state_dir, "supervisor")
        self.run_dir = os.path.join(self.dir, "run")
        self.log_dir = os.path.join(state_dir, "logs")
        self.programs_dir = os.path.join(self.dir, "programs")
        self.conf_path = os.path.join(self.dir, "supervisord.conf")
        self.socket_path = os.path.join(self.run_dir, "supervisor.sock")

    # -- files ---------------------------------------------------------------------

    def render_conf(self) -> str:
        return SUPERVISORD_CONF.format(
            env=self.env,
            run_dir=self.run_dir,
            log_dir=self.log_dir,
            programs_dir=self.programs_dir,
        )

    def program_path(self, program: str) -> str:
        return os.path.join(self.programs_dir, program + ".conf")

    # -- the daemon ----------------------------------------------------------------

    def rpc(self, timeout: float = 30.0):
        transport = _UnixTransport(self.socket_path, timeout)
        return xmlrpc.client.ServerProxy("http://localhost", transport=transport)

    def is_running(self) -> bool:
        if not os.path.exists(self.socket_path):
            return False
        try:
            return self.rpc(timeout=5).supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start(self, timeout: float = 20.0) -> None:
        binary = os.path.join(os.path.dirname(sys.executable), "supervisord")
        result = subprocess.run(
            [binary, "-c", self.conf_path],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SupervisorError(
                "starting supervisord with %s failed: %s"
                % (self.conf_path, (result.stderr or result.stdout).strip())
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return
            time.sleep(0.1)
        raise SupervisorError(
            "supervisord for %s did not answer on %s within %ss"
            % (self.env, self.socket_path, timeout)
        )

    def shutdown(self, timeout: float = 120.0) -> None:
        """Stop every program, then supervisord itself, and wait until it is gone."""
        pid = self.pid()
        try:
            self.rpc(timeout=timeout).supervisor.shutdown()
        except (OSError, xmlrpc.client.Error) as exc:
            raise SupervisorError("shutting down supervisord failed: %s" % exc) from exc
        deadline = time.monotonic() + timeout
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        if pid:
            raise SupervisorError("supervisord (pid %s) did not exit in time" % pid)

    def pid(self) -> int | None:
        try:
            with open(os.path.join(self.run_dir, "supervisord.pid")) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    # -- programs ------------------------------------------------------------------

    def processes(self) -> dict[str, dict]:
        """Every program supervisord knows, by name."""
        if not self.is_running():
            return {}
        infos = self.call("getAllProcessInfo")
        return {info["name"]: info for info in infos}

    def call(self, method: str, *args):
        try:
            return getattr(self.rpc().supervisor, method)(*args)
        except xmlrpc.client.Fault as exc:
            raise SupervisorError(
                "supervisor %s%s failed: %s" % (method, args, exc.faultString)
            ) from exc
        except OSError as exc:
            raise SupervisorError(
                "supervisor %s%s failed: %s" % (method, args, exc)
            ) from exc

    def reread(self) -> tuple[list[str], list[str], list[str]]:
        """Load the program files again; return (added, changed, removed) groups."""
        added, changed, removed = self.call("reloadConfig")[0]
        return added, changed, removed

    def add(self, program: str) -> None:
        self.call("addProcessGroup", program)

    def remove(self, program: str) -> None:
        """Stop a program (waiting for it) and forget it."""
        info = self.processes().get(program)
        if info and info["statename"] in ALIVE_STATES + ("BACKOFF",):
            self.call("stopProcess", program, True)
        if info is not None:
            self.call("removeProcessGroup", program)

    def start_program(self, program: str) -> None:
        self.call("startProcess", program, True)

    def stop_program(self, program: str) -> None:
        self.call("stopProcess", program, True)

    def signal(self, program: str, signal_name: str) -> None:
        self.call("signalProcess", program, signal_name)

    def runs_older_than(self, program: str, paths: list[str]) -> bool:
        """Whether a program runs and started before one of `paths` last changed, so
        it has yet to read them. With no paths, whether it runs."""
        info = self.processes().get(program)
        if not info or info["statename"] not in ALIVE_STATES:
            return False
        if not paths:
            return True
        try:
            newest = max(os.stat(path).st_mtime for path in paths)
        except OSError:
            return True
        # supervisor reports whole seconds; a file written in the same second as the
        # start is treated as newer, so the change is applied rather than missed.
        return info["start"] <= newest

    def log_path(self, program: str) -> str:
        return os.path.join(self.log_dir, program + ".log")
