"""Errors that mean the user gave something wrong; the CLI prints them without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Base class: a bad input, config or path. The message names the file/row/column."""


class DataError(UserError, ValueError):
    """A catalog, image or packed store is missing, malformed or inconsistent."""


class RunFolderError(UserError):
    """A run folder is missing, incomplete, or would be overwritten."""
