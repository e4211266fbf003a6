"""Running a command as the account that owns an environment's services."""

from __future__ import annotations

import os
import pwd
import subprocess


def run_as(argv: list[str], user: str | None, **kwargs) -> subprocess.CompletedProcess:
    """Run argv (never through a shell) as `user`, switching only when it differs."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("check", False)
    if user and pwd.getpwuid(os.getuid()).pw_name != user:
        entry = pwd.getpwnam(user)
        kwargs["user"] = entry.pw_uid
        kwargs["group"] = entry.pw_gid
        kwargs["extra_groups"] = []
        env = dict(kwargs.pop("env", None) or os.environ)
        env.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
        kwargs["env"] = env
        kwargs.setdefault("cwd", "/")
    return subprocess.run(argv, **kwargs)  # noqa: PLW1510 - check is set above


def chown_tree(path: str, user: str | None) -> None:
    if not user:
        return
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.lchown(name, entry.pw_uid, entry.pw_gid)
