"""How the commands behave at the terminal, whichever task runs.

Flag values of the wrong type: Invoke converts a flag's value with the type of the task
parameter's default (`int` for `--concurrent 100`) and lets the conversion's ValueError
escape as a traceback. Loading this module (tasks.py does) turns that into Invoke's own
parse error, printed as one line that names the flag, the value and what it takes, with
a non-zero exit.

Output cut short: when a reader such as `head` closes the pipe early, the command stops
quietly, as other command-line tools do, instead of printing a traceback.
"""

from __future__ import annotations

import os
import sys

from invoke.exceptions import ParseError
from invoke.parser.argument import Argument

_KINDS = {int: "a whole number", float: "a number", str: "text", bool: "true or false"}
_convert = Argument.set_value


def _set_value(self: Argument, value, cast: bool = True) -> None:
    try:
        _convert(self, value, cast)
    except ValueError:
        raise ParseError(
            "invalid value %r for --%s; it takes %s"
            % (value, self.name.replace("_", "-"), _KINDS.get(self.kind, self.kind))
        ) from None


if getattr(Argument.set_value, "__module__", "") != __name__:
    Argument.set_value = _set_value


_excepthook = sys.excepthook


def _quiet_on_closed_pipe(kind, value, traceback) -> None:
    if issubclass(kind, BrokenPipeError):
        # Nothing more can be written; point stdout at nothing so the interpreter's
        # final flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        os._exit(141)
    _excepthook(kind, value, traceback)


if sys.excepthook is not _quiet_on_closed_pipe:
    sys.excepthook = _quiet_on_closed_pipe
