"""Errors the benchmarking commands raise, each with a message meant for a person."""

from __future__ import annotations


class BenchError(Exception):
    """Base of every benchmarking error; the message is shown as it is."""


class BenchInputError(BenchError, ValueError):
    """A value given on the command line or in a file is not acceptable."""


class ScenarioError(BenchInputError):
    """A scenario file is malformed; the message names the file, line and field."""

    def __init__(self, path: str, line: int | None, field: str, problem: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {field}: {problem}")


class UnknownEndpointError(BenchInputError):
    """The server says an endpoint does not exist (it answers 404 or 405)."""

    def __init__(self, message: str, label: str, status: int) -> None:
        self.label = label
        self.status = status
        super().__init__(message)


class TargetDownError(BenchError):
    """The service to load does not answer at all (the environment is down)."""


class ToolMissingError(BenchError):
    """A program the benchmark drives (wrk, pgbench) is not installed."""


class GeneratorError(BenchError):
    """The load generator failed or its output could not be read."""
