"""nginx helpers: validate a config, reload gracefully, wait for old workers to go.

Waiting for the old workers matters for draining: after a reload, workers started
under the old config finish the requests they hold and exit. Once they are gone, no
request can still be on its way to a replica the new config dropped, so that replica
may stop.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time

from ansible.module_utils.nself.accounts import run_as


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


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

    def test(self, conf: str | None = None) -> None:
        """Validate the whole config as nginx's account; raise with nginx's message."""
        result = run_as(
            [
                self.binary,
                "-t",
                "-q",
                "-c",
                conf or self.conf,
                "-p",
                self.prefix,
                "-e",
                self.error_log,
            ],
            self.user,
        )
        if result.returncode != 0:
            raise NginxError((result.stderr or result.stdout).strip())

    def test_candidate(self, path: str, content: str) -> None:
        """Validate the config as it would be with `content` in `path`, changing
        nothing: the candidate goes into a scratch copy of the folder that holds
        `path`, and a scratch main config includes that copy instead."""
        with tempfile.TemporaryDirectory(prefix="nself-nginx-") as scratch:
            with open(self.conf) as handle:
                main = handle.read()
            if os.path.abspath(path) == os.path.abspath(self.conf):
                main = content
            else:
                folder = os.path.dirname(os.path.abspath(path))
                shadow = os.path.join(scratch, "shadow")
                shutil.copytree(folder, shadow)
                _write(os.path.join(shadow, os.path.basename(path)), content)
                main = main.replace(folder + os.sep, shadow + os.sep)
            candidate = os.path.join(scratch, os.path.basename(self.conf))
            _write(candidate, main)
            self._hand_over(scratch)
            self.test(candidate)

    def _hand_over(self, top: str) -> None:
        """Give a scratch folder to nginx's account, which validates as itself."""
        if not self.user or os.geteuid() != 0:
            return
        account = pwd.getpwnam(self.user)
        for folder, _, files in os.walk(top):
            for path in [folder] + [os.path.join(folder, f) for f in files]:
                os.chown(path, account.pw_uid, account.pw_gid)

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
