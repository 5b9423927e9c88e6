"""The one base class of the errors a user causes and can fix: a bad config value, a missing or
mismatched checkpoint, a corrupt video, a demo folder in the wrong format.

Every such error class derives from :class:`UserError` *and* from the builtin it has always been
(``ValueError``, ``RuntimeError``, ``FileNotFoundError``, ``KeyError``), so existing ``except``
clauses keep catching it::

    class ConfigError(UserError, ValueError): ...
    class CheckpointError(UserError, RuntimeError): ...

``toto-robot`` (toto_robot/cli.py) prints a ``UserError`` as one ``error: ...`` line and exits with
status 2; any other exception is a bug and keeps its traceback. The message is the whole report, so
it names the key, path or value that is wrong and, where one exists, the fix.

This module imports nothing from the project, so any module may import it.
"""
from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave (config, paths, files), reported without a traceback."""


class InputNotFoundError(UserError, FileNotFoundError):
    """A file or folder the config names does not exist or holds nothing usable."""


class DataFormatError(UserError, ValueError):
    """A file or folder the config names holds the wrong thing, or too little of it, for the job."""


class UnknownNameError(UserError, KeyError):
    """A name (model size, tokenizer kind, ...) that no registry knows; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError's str() quotes its message; print it as written
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


def one_line(message: str) -> str:
    """``message`` with its lines stripped and joined by single spaces (reports stay one line long)."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())
