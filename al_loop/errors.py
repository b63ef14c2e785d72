"""Errors that end a command with a clear message instead of a traceback."""

from __future__ import annotations

import errno


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


class BrokenStateError(AlLoopError):
    """A file al-loop keeps (the ledger, the MLflow store) is truncated or overwritten; the message names the file
    and what to do. Nothing is deleted for you."""

    exit_code = 6


class StorageError(AlLoopError):
    """The disk refused a write: no space left, read-only, or no permission; nothing was left half-written."""

    exit_code = 7


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def storage_error(error: OSError) -> StorageError | None:
    """A StorageError for a write the disk refused (full, read-only, no permission); None for other OS errors."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in _DISK_FULL:
        return StorageError(f"no space left on the device{where}: {error.strerror or error}. Free some space (or set "
                            "output_dir on another disk) and re-run the same command: what was recorded before is "
                            "kept, and each ledger write is all-or-nothing")
    if error.errno in _NOT_WRITABLE:
        return StorageError(f"cannot write{where}: {error.strerror or error}. Make it writable, or set output_dir to "
                            "a folder you can write")
    return None
