"""The exception hierarchy: one root, a few meaningful kinds.

Every error the package raises on purpose derives from :class:`PromptSearchError`,
so ``except PromptSearchError`` catches all of them.  Messages name the field that
is wrong, what was given, and what would fix it.
"""

from __future__ import annotations

__all__ = [
    "ClaimLostError",
    "ConfigError",
    "DataError",
    "GeneratorError",
    "ModelError",
    "PromptSearchError",
    "StorageError",
    "StudyConflictError",
    "TemplateError",
]


class PromptSearchError(Exception):
    """Root of every error raised by promptsearch."""


class ConfigError(PromptSearchError, ValueError):
    """An argument or option has a value that is not allowed."""


class TemplateError(ConfigError):
    """A prompt template is malformed (no answer slot, unknown field, bad braces)."""


class DataError(PromptSearchError):
    """A data file or record set cannot be read or does not fit the task."""


class ModelError(PromptSearchError):
    """A model cannot be found, loaded, or run."""


class GeneratorError(ModelError):
    """A text-generation backend cannot be used: unreachable, key refused, unknown model,
    or still failing after its retries."""


class StorageError(PromptSearchError):
    """The trial database cannot be opened, migrated, or written."""


class StudyConflictError(StorageError):
    """A study of that name exists with a different task, model or configuration."""


class ClaimLostError(StorageError):
    """A worker tried to finish a trial that another worker has taken over (its
    heartbeat had stopped for longer than the timeout)."""
