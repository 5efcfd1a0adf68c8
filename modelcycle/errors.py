"""Errors that carry a message fit for a person: the file, key or column and what was expected."""

from __future__ import annotations


class ModelcycleError(Exception):
    """Base of every error modelcycle raises on purpose; the CLI prints its message in one line."""


class ConfigError(ModelcycleError):
    """A configuration file is missing, unreadable or does not match the schema."""


class DataError(ModelcycleError):
    """A data source is missing, empty or cannot be read."""


class DataValidationError(DataError):
    """A batch breaks the declared schema; carries every violation, not only the first."""

    def __init__(self, source: str, violations: list[str]) -> None:
        self.source = source
        self.violations = list(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"{source}: {len(self.violations)} schema violation(s):\n{lines}")


class EstimatorError(ModelcycleError):
    """The configured estimator cannot be imported, is not an estimator, or cannot do the job."""


class RegistryError(ModelcycleError):
    """A registry operation was refused: unknown model or version, no champion, invalid move."""


class IntegrityError(ModelcycleError):
    """A stored file's bytes no longer match the SHA-256 the registry recorded."""


class ArtifactStoreError(ModelcycleError):
    """A run folder could not be written or read back complete."""
