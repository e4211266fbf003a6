"""Documentation of the options every module that connects to PostgreSQL takes."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  login_host:
    description: Host of the server.
    type: str
    default: 127.0.0.1
  login_port:
    description: Port of the server.
    type: int
    required: true
  login_user:
    description: Account to connect as (a superuser where the task needs one).
    type: str
    default: postgres
  login_password:
    description: Password of I(login_user).
    type: str
    required: true
"""
