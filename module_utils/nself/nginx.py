"""nginx helpers: validate a config, reload gracefully, wait for old workers to go.

Waiting for the old workers matters for draining: after a reload, workers started
under the old config finish the requests they hold and exit. Once they are gone, no
request can still be on its way to a replica the new config dropped, so that replica
may stop.
"""

from __future__ import annotations

import os
import signal
import time

from ansible.module_utils.nself.accounts import run_as


class NginxError(Exception):
    """nginx refused a config or did not reload; the message carries nginx's words."""


class Nginx:
    def __init__(self, binary: str, conf: str, prefix: str, error_log: str, user=None):
        self.binary = binary
        self.conf = conf
        self.prefix = prefix
        self.error_log = error_log
        self.user = user

    @property
    def pid_file(self) -> str:
        return os.path.join(self.prefix, "nginx.pid")

    def test(self) -> None:
        """Validate the whole config as nginx's account; raise with nginx's message."""
        result = run_as(
            [
                self.binary,
                "-t",
                "-q",
                "-c",
                self.conf,
                "-p",
                self.prefix,
                "-e",
                self.error_log,
            ],
            self.user,
        )
        if result.returncode != 0:
            raise NginxError((result.stderr or result.stdout).strip())

    def master_pid(self) -> int | None:
        try:
            with open(self.pid_file) as handle:
                pid = int(handle.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def workers(self, master: int) -> set[int]:
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                found.add(int(entry))
        return found

    def reload(self, timeout: float = 30.0) -> bool:
        """Reload gracefully; return False when nginx does not run (nothing to do)."""
        master = self.master_pid()
        if master is None:
            return False
        old = self.workers(master)
        os.kill(master, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.workers(master)
            if current and not (current & old):
                return True
            time.sleep(0.05)
        raise NginxError(
            "nginx (pid %s) still runs workers of the previous config after %ss"
            % (master, timeout)
        )
