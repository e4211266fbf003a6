"""Documentation of the options every module that acts on an environment takes."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  state_dir:
    description: The environment's state folder.
    type: path
    required: true
  env:
    description: Name of the environment.
    type: str
    required: true
  runtime:
    description: How the environment runs services.
    type: str
    choices: [process, compose, swarm]
    default: process
  runtime_options:
    description: Options of the runtime (the compose file, the project name, ...).
    type: dict
    default: {}
"""
