"""Every exception and warning Destiny raises on purpose.

Each subclasses the builtin a Python user would try first (``ValueError`` for bad
input, ``RuntimeError`` for a failing resource), so ``except ValueError`` keeps
working, and ``DestinyError`` catches them all. Messages say what is wrong, where
(file, JSON path, line, variable) and how to fix it; the CLI prints them as one
line and exits with status 2.
"""

from __future__ import annotations


class DestinyError(Exception):
    """Base class of Destiny's own errors."""


class ConfigError(DestinyError, ValueError):
    """A network description (JSON) or an option that overrides it is invalid."""


class DataError(DestinyError, ValueError):
    """A dataset, index file or text file is malformed or does not fit the network."""


class NetworkFileError(DestinyError, ValueError):
    """A network (weights) file is malformed, foreign or inconsistent with its config."""


class UsageError(DestinyError, ValueError):
    """Arguments of a call or a command line do not make sense together."""


class ModelImportError(DestinyError, ValueError):
    """A model from another framework (ONNX, a PyTorch state dict, safetensors) cannot become a
    DSSTNE network: an operation with no DSSTNE layer, a weight that fits no layer."""


class ResourceError(DestinyError, RuntimeError):
    """A resource ran out or is unavailable: GPU memory, disk space, a device."""


class NumericalError(DestinyError, FloatingPointError):
    """Training produced NaN or infinite values."""


class NumericalWarning(UserWarning):
    """Training diverged while staying finite: its loss or weights grew far past their start."""


class ConfigWarning(UserWarning):
    """A network description uses a spelling DSSTNE's docs use but its parser rejects."""


class DataWarning(UserWarning):
    """Input data had something Destiny repaired or skipped (a duplicate, an empty line)."""


class NotFittedError(DestinyError, ValueError, AttributeError):
    """An estimator was used before ``fit`` (scikit-learn's convention)."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (damaged, or not a checkpoint) while looking for one to resume from."""
