"""Errors that reach the user, each with its own exit status.

Exit statuses (the CLI returns ``error.exit_code``):

* 1 -- ``--check`` found that something would change (not an error class).
* 2 -- bad input: an unknown query, malformed WHENCE, invalid or unsafe YAML, bad options.
* 3 -- firmware could not be fetched (missing on every mirror, or offline and not cached).
* 4 -- integrity: a blob or the lock file disagrees with what was expected.
"""

from __future__ import annotations

EXIT_CHECK_FAILED = 1


class LkFirmwareError(Exception):
    """Base class: a failure with a message meant for the user."""

    exit_code = 2


class UsageError(LkFirmwareError):
    """Bad input: options, queries or files the user gave."""

    exit_code = 2


class QueryError(UsageError):
    """A query that matches nothing in the catalog."""


class WhenceError(UsageError):
    """A WHENCE index that cannot be trusted; the message names the line."""


class ConfigError(UsageError):
    """A LinuxKit config that lkfirmware refuses to edit; the file is left untouched."""


class FetchError(LkFirmwareError):
    """Firmware that could not be fetched; nothing partial is left behind."""

    exit_code = 3


class IntegrityError(LkFirmwareError):
    """A blob, cache entry or lock file that does not match what was expected."""

    exit_code = 4
