"""Errors that end a command with a clear message instead of a traceback."""

from __future__ import annotations


class AlLoopError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""

    exit_code = 2


class ConfigError(AlLoopError):
    """The configuration is invalid (unknown key, wrong type, missing file)."""


class DataError(AlLoopError):
    """The pool or test data is invalid (missing columns, bad ids, NaN features...)."""


class LedgerBusyError(AlLoopError):
    """Another process holds the ledger of this run."""

    exit_code = 3


class LedgerMismatchError(AlLoopError):
    """The ledger belongs to a different pool or configuration."""


class ServiceError(AlLoopError):
    """Label Studio is unreachable, refused the request, or answered something unusable."""

    exit_code = 4


class WaitTimeout(AlLoopError):
    """The batch was not answered in time; nothing is lost, `al-loop sync` continues later."""

    exit_code = 5
