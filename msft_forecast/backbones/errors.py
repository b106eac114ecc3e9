"""Errors raised while resolving and loading backbone checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint cannot be resolved, parsed or loaded; the message says why and how to fix it."""


class HubUnavailableError(CheckpointError):
    """The model hub could not be reached and no cached copy exists."""
