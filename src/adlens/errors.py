"""Exceptions raised at the public boundary; messages name the input and the problem."""


class AdlensError(Exception):
    """Base class for errors a user can act on."""


class InvalidInput(AdlensError):
    """An input (file, row, argument) is unusable; the message says which and why."""


class WorkspaceError(AdlensError):
    """The workspace is missing, not initialised, or of an unknown schema version."""
