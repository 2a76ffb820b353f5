"""The kit's errors. Each names what is wrong (the file, key, column, stage) and the fix; the command
line prints the message alone (`error: ...`, exit 2), never a traceback. `KitError` is their base."""

from __future__ import annotations


class KitError(Exception):
    """Base of every error the kit raises on purpose: input it cannot use, a stage it cannot run."""


class ParamsError(KitError, ValueError):
    """A parameter file (or override) that cannot be used; the message names file, key and fix."""


class DataError(KitError, RuntimeError):
    """Data that cannot be found or read; the message says what, where, and how to fix it."""


class ModelError(KitError, RuntimeError):
    """A base model that cannot be found or loaded; the message names it and the fix."""


class TrainingError(KitError, RuntimeError):
    """A stage that cannot run or diverged; names the stage, the variant and the step."""


class RunFailed(KitError, RuntimeError):
    """A notebook of a run failed; names the notebook, the cell and the executed copy."""


class RunReadError(KitError, ValueError):
    """A finished run (its manifest or results) that cannot be read back: names the file and what is wrong."""
