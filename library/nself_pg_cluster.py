#!/usr/bin/python
"""Ansible module: a PostgreSQL cluster owned by an environment."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_pg_cluster
short_description: Ensure an environment has its own initialized PostgreSQL cluster
description:
  - Runs C(initdb) once for the environment's data folder, as the account the server runs
    as, with SCRAM authentication and the given superuser password.
  - An existing cluster is left as it is; its data is never touched.
options:
  data_dir:
    description: The cluster's data folder.
    type: path
    required: true
  bin_dir:
    description: Folder of the PostgreSQL server programs.
    type: path
    default: /usr/lib/postgresql/15/bin
  user:
    description: Account that owns and runs the cluster.
    type: str
    required: true
  superuser:
    description: Name of the cluster's superuser.
    type: str
    default: postgres
  superuser_password:
    description: Password of the superuser.
    type: str
    required: true
    no_log: true
attributes:
  check_mode:
    support: full
    description: Reports whether initdb would run.
  diff_mode:
    support: none
    description: Nothing to show; the cluster is created or not.
"""

EXAMPLES = r"""
- name: Ensure the local cluster exists
  nself_pg_cluster:
    data_dir: /var/lib/nself/local/postgres/data
    user: nself
    superuser_password: "{{ pg_superuser_password }}"
"""

RETURN = r"""
created:
  description: Whether the cluster was created by this task.
  returned: always
  type: bool
version:
  description: The cluster's major version, from PG_VERSION.
  returned: when the cluster exists
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.accounts import run_as


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type="path", required=True),
            bin_dir=dict(type="path", default="/usr/lib/postgresql/15/bin"),
            user=dict(type="str", required=True),
            superuser=dict(type="str", default="postgres"),
            superuser_password=dict(type="str", required=True, no_log=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    version_file = os.path.join(p["data_dir"], "PG_VERSION")
    if os.path.exists(version_file):
        with open(version_file) as handle:
            module.exit_json(
                changed=False, created=False, version=handle.read().strip()
            )
    if os.path.isdir(p["data_dir"]) and os.listdir(p["data_dir"]):
        module.fail_json(
            msg="initializing cluster in %s: the folder is not empty and holds no "
            "cluster; move its contents away first" % p["data_dir"]
        )
    if module.check_mode:
        module.exit_json(changed=True, created=True)

    parent = os.path.dirname(p["data_dir"])
    # The password reaches initdb through a file only the server's account can read,
    # never through its command line.
    with tempfile.NamedTemporaryFile("w", dir=parent, delete=False) as handle:
        handle.write(p["superuser_password"] + "\n")
        pwfile = handle.name
    try:
        import pwd

        entry = pwd.getpwnam(p["user"])
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        os.chmod(pwfile, 0o600)
        result = run_as(
            [
                os.path.join(p["bin_dir"], "initdb"),
                "--pgdata",
                p["data_dir"],
                "--username",
                p["superuser"],
                "--pwfile",
                pwfile,
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ],
            p["user"],
        )
    finally:
        os.unlink(pwfile)
    if result.returncode != 0:
        module.fail_json(
            msg="initializing cluster in %s with initdb failed: %s"
            % (p["data_dir"], result.stderr.strip() or result.stdout.strip())
        )
    with open(version_file) as handle:
        module.exit_json(changed=True, created=True, version=handle.read().strip())


if __name__ == "__main__":
    main()
