"""Errors a user can cause; the CLI prints them as one line, without a traceback."""


class PipelineError(Exception):
    """Base for problems the user can fix (bad input, locked warehouse, missing tool)."""


class InputError(PipelineError):
    """An input file or message source cannot be read as required."""


class WarehouseError(PipelineError):
    """The warehouse cannot be opened or written."""
