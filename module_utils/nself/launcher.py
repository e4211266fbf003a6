"""The program supervisor starts for every process-runtime instance.

    python nself-launch --state-dir D --env E --service S --instance I [--user U] \
        -- PROGRAM ARGS...

It runs as root (or the invoking user), puts itself into the instance's cgroups with the
limits stored for it, gives up root for the service account, and then becomes the
program: supervisor's pid is the program's pid, and signals reach it directly. Where
cgroups cannot be used it starts the program all the same; `scale-status` says so.

It is written to `<state>/bin/nself-launch` by the process runtime and needs only the
standard library and the `cgroups` module beside it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import sys


def drop_privileges(user: str) -> None:
    entry = pwd.getpwnam(user)
    if os.getuid() == entry.pw_uid:
        return
    os.initgroups(user, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nself-launch")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--user")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no program to run after --")

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from nself_cgroups import Cgroups  # the copy written beside this launcher

    cgroups = Cgroups(args.state_dir, args.env)
    if os.getuid() == 0 and cgroups.unavailable() is None:
        try:
            cgroups.apply(args.instance, cgroups.stored(args.service))
            cgroups.join(args.instance, os.getpid())
        except OSError as exc:
            print(
                "nself-launch: %s runs without limits: %s" % (args.instance, exc),
                file=sys.stderr,
            )
    if args.user:
        drop_privileges(args.user)
    os.execvp(command[0], command)  # noqa: S606 - becoming the program is the point


if __name__ == "__main__":
    main()
