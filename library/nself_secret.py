#!/usr/bin/python
"""Ansible module: a generated secret of an environment."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_secret
short_description: Ensure a generated secret exists in an environment's state folder
description:
  - Generates a random secret the first time and stores it in a file of mode 0600;
    afterwards returns the stored one, so every environment keeps its own secrets.
  - The value is returned for use in templates; tasks must set C(no_log) when they pass it on.
options:
  path:
    description: File that holds the secret.
    type: path
    required: true
  length:
    description: Number of characters of a new secret.
    type: int
    default: 32
  owner:
    description: Account that owns the file (it may need to read it).
    type: str
attributes:
  check_mode:
    support: full
    description: Reports that a secret would be generated; returns a placeholder value.
  diff_mode:
    support: none
    description: Secrets are never shown.
"""

EXAMPLES = r"""
- name: Ensure the database password exists
  nself_secret:
    path: /var/lib/nself/local/secrets/postgres_app_password
  register: app_password
  no_log: true
"""

RETURN = r"""
value:
  description: The secret.
  returned: always
  type: str
path:
  description: File that holds the secret.
  returned: always
  type: str
"""

import os
import pwd
import secrets
import string

from ansible.module_utils.basic import AnsibleModule

# Letters and digits only: the secret ends up in URLs, conf files and connection strings,
# where punctuation would need quoting in each of them.
ALPHABET = string.ascii_letters + string.digits


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            length=dict(type="int", default=32, no_log=False),
            owner=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    path, owner = module.params["path"], module.params["owner"]
    changed = False
    if os.path.exists(path):
        with open(path) as handle:
            value = handle.read().strip()
    else:
        changed = True
        value = "".join(
            secrets.choice(ALPHABET) for _ in range(module.params["length"])
        )
        if module.check_mode:
            value = "check-mode-placeholder"
        else:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(value + "\n")
    if os.path.exists(path):
        stat = os.stat(path)
        if stat.st_mode & 0o777 != 0o600:
            changed = True
            if not module.check_mode:
                os.chmod(path, 0o600)
        if owner:
            try:
                uid = pwd.getpwnam(owner).pw_uid
            except KeyError:
                module.fail_json(msg="storing secret %s: no user %r" % (path, owner))
            if stat.st_uid != uid:
                changed = True
                if not module.check_mode:
                    os.chown(path, uid, -1)
    module.exit_json(changed=changed, value=value, path=path)


if __name__ == "__main__":
    main()
