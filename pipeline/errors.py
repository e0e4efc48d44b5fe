"""Exception types the CLI maps to exit codes (see cli.py)."""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for every error the CLI knows how to report."""

    exit_code = 2


class UsageError(PipelineError):
    """Bad command-line usage, configuration or input: exit 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A params or policy file is missing, unparsable or violates its schema."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = list(violations)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {v}" for v in violations))


class InputError(UsageError):
    """An input file (data, model, batch) cannot be used as given."""


class CheckFailed(PipelineError):
    """A gate or check ran and said no (data contract, policy, drift): exit 1."""

    exit_code = 1

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        self.failures = list(failures or [])
        detail = "".join(f"\n  - {f}" for f in self.failures)
        super().__init__(message + detail)


class MetricError(PipelineError):
    """A metric came out NaN or infinite (or undefined): exit 2, nothing is written."""

    exit_code = 2
