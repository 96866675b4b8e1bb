"""Exceptions shared across modules: ConfigError for anything a user wrote wrong."""

from __future__ import annotations


class ConfigError(Exception):
    """A mistake in the configuration (file, flags or the files they name).

    ``str()`` gives the one line printed at start-up: ``file:line: message`` (the parts that are
    known), so a user sees where to look and what to do.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.message}"
