"""Exceptions for bad input. The CLI turns each into one line and exit code 2."""


def first_line(error: BaseException) -> str:
    """The first line of another library's error message (some span a page), for one-line
    messages that quote it."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class SprkitInputError(ValueError):
    """Base class: the user gave something sprkit cannot use; the message names it."""


class ParameterError(SprkitInputError):
    """A penalty parameter (lam0, lam2, lam, alpha, M) is out of its domain."""


class InstanceError(SprkitInputError):
    """An instance file is missing, unreadable or inconsistent."""


class SolverError(SprkitInputError):
    """An external solver refused or failed on the model (e.g. a size-limited licence)."""


class OutputError(SprkitInputError):
    """A file or folder to write cannot be written (a file in the way, no permission)."""


class RunFolderError(SprkitInputError):
    """A run folder is in use by another run, or holds a run that cannot be continued."""


class RunExistsError(RunFolderError):
    """The run folder already holds a run (to be continued or replaced explicitly)."""


class CheckpointError(RunFolderError):
    """A checkpoint or saved weights file is missing a part, damaged, or from another run."""


class TrainingError(RuntimeError):
    """A training run that cannot go on (for example a non-finite loss)."""
