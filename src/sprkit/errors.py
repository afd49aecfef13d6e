"""Exceptions for bad input. The CLI turns each into one line and exit code 2."""


class SprkitInputError(ValueError):
    """Base class: the user gave something sprkit cannot use; the message names it."""


class ParameterError(SprkitInputError):
    """A penalty parameter (lam0, lam2, lam, alpha, M) is out of its domain."""


class InstanceError(SprkitInputError):
    """An instance file is missing, unreadable or inconsistent."""


class SolverError(SprkitInputError):
    """An external solver refused or failed on the model (e.g. a size-limited licence)."""


class TrainingError(RuntimeError):
    """A training run that cannot go on (for example a non-finite loss)."""
