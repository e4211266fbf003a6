#!/usr/bin/python
"""Ansible module: change an nginx config file safely and reload gracefully."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nself_nginx_config
short_description: Write an nginx config file, validate it with nginx -t and reload
description:
  - Writes I(content) to I(path), then validates the whole config with C(nginx -t).
    When nginx refuses it, the previous file is put back and the task fails with nginx's
    message, so nginx is never left with a broken config.
  - When the file changed and nginx runs, nginx reloads gracefully and the task waits
    until the workers of the previous config have finished their requests and exited.
options:
  path:
    description: The config file to write.
    type: path
    required: true
  content:
    description: The file's new text.
    type: str
    required: true
  main_config:
    description: nginx's main config file, which includes I(path).
    type: path
    required: true
  prefix:
    description: nginx's prefix folder (pid file and temp folders live there).
    type: path
    required: true
  error_log:
    description: Error log used before the config is read.
    type: path
    required: true
  binary:
    description: The nginx program.
    type: path
    default: /usr/sbin/nginx
  user:
    description: Account nginx runs as; the validation runs as it too.
    type: str
  reload:
    description: Whether to reload a running nginx after a change.
    type: bool
    default: true
  reload_timeout:
    description:
      - Seconds to wait for the old workers to drain and exit; longer than nginx's
        C(worker_shutdown_timeout), so that a slow request ends before the wait does.
    type: int
    default: 45
attributes:
  check_mode:
    support: full
    description:
      - Reports whether the file would change and nginx would reload, and validates
        the new text with C(nginx -t) in a scratch copy of the config, so a dry run
        fails where a real run would; nothing is written.
  diff_mode:
    support: full
    description: Shows the file before and after.
"""

EXAMPLES = r"""
- name: Ensure the api upstream lists every replica
  nself_nginx_config:
    path: /var/lib/nself/local/nginx/upstreams/api.conf
    content: "{{ lookup('ansible.builtin.template', 'nginx/upstream.conf.j2') }}"
    main_config: /var/lib/nself/local/nginx/nginx.conf
    prefix: /var/lib/nself/local/nginx
    error_log: /var/lib/nself/local/logs/nginx_error.log
"""

RETURN = r"""
reloaded:
  description: Whether nginx was reloaded (or would be, in check mode).
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.nself.nginx import Nginx, NginxError
from ansible.module_utils.nself.runtime import read_text, write_text


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            content=dict(type="str", required=True),
            main_config=dict(type="path", required=True),
            prefix=dict(type="path", required=True),
            error_log=dict(type="path", required=True),
            binary=dict(type="path", default="/usr/sbin/nginx"),
            user=dict(type="str"),
            reload=dict(type="bool", default=True),
            reload_timeout=dict(type="int", default=45),
        ),
        supports_check_mode=True,
    )
    p = module.params
    content = p["content"] if p["content"].endswith("\n") else p["content"] + "\n"
    existed = os.path.exists(p["path"])
    before = read_text(p["path"])
    changed = before != content
    nginx = Nginx(p["binary"], p["main_config"], p["prefix"], p["error_log"], p["user"])
    will_reload = changed and p["reload"] and nginx.master_pid() is not None
    result = dict(changed=changed, reloaded=will_reload)
    if module._diff and changed:
        result["diff"] = dict(
            before_header=p["path"],
            after_header=p["path"],
            before=before,
            after=content,
        )
    if not changed:
        module.exit_json(**result)
    if module.check_mode:
        # A dry run validates the candidate too, so it fails where a real run would.
        if os.path.exists(p["main_config"]):
            try:
                nginx.test_candidate(p["path"], content)
            except (NginxError, OSError) as exc:
                module.fail_json(
                    msg="nginx would reject %s; nothing was changed: %s"
                    % (p["path"], exc)
                )
        module.exit_json(**result)

    write_text(p["path"], content)
    if os.path.exists(p["main_config"]):
        try:
            nginx.test()
        except NginxError as exc:
            # Put the previous file back before failing: nginx keeps serving with it.
            if existed:
                write_text(p["path"], before)
            else:
                os.remove(p["path"])
            module.fail_json(
                msg="nginx rejected %s; the previous config is kept: %s"
                % (p["path"], exc)
            )
    if will_reload:
        try:
            nginx.reload(p["reload_timeout"])
        except (NginxError, OSError) as exc:
            module.fail_json(
                msg="reloading nginx after writing %s: %s" % (p["path"], exc)
            )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
