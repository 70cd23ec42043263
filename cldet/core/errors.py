"""Errors a user can act on. The CLI prints the message and exits with the error's code."""

from __future__ import annotations

__all__ = ["CldetError", "DataError", "RunError", "ArtifactError", "DriftError", "MissingRuntimeError"]


class CldetError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""

    exit_code = 2


class DataError(CldetError):
    """Bad dataset: missing folders, malformed labels, unknown class names."""

    exit_code = 3


class RunError(CldetError):
    """Bad run directory: missing/invalid checkpoint or lineage, refused overwrite, sha256 mismatch."""

    exit_code = 4


class ArtifactError(CldetError):
    """Artifact and manifest disagree, or an artifact is corrupt."""

    exit_code = 5


class DriftError(CldetError):
    """Accuracy drift past tolerance (used by `cldet check`)."""

    exit_code = 1


class MissingRuntimeError(CldetError):
    """A requested runtime (TensorRT, CUDA provider, training extra) is not installed."""

    exit_code = 6
