"""Errors the user can fix: each message names the problem and the fix. The CLI prints these as one line;
anything else is a bug and is shown with its traceback."""
from __future__ import annotations


class QTransferError(Exception):
    """Base of every error that is the user's to fix (a setting, a file, a dataset, the network)."""


class InputError(QTransferError, ValueError):
    """A setting, argument, file or dataset that qtransfer cannot use."""


class MissingFileError(QTransferError, FileNotFoundError):
    """A file or folder the user named (or a run should hold) does not exist."""


class MissingPackageError(QTransferError, ImportError):
    """A feature needs an optional package that is not installed; the message names the extra to install."""


class ChecksumError(InputError):
    """A file does not have its published sha256."""


class WeightsError(ChecksumError):
    """A weights file is corrupt, truncated, or not the expected one."""


class DownloadError(QTransferError, OSError):
    """Something could not be fetched (offline, unreachable host, HTTP error)."""


class WeightsUnavailable(DownloadError):
    """Pretrained weights are neither on disk nor downloadable."""


class WriteError(QTransferError, OSError):
    """A result could not be written (a full disk, no permission); what was written before is intact."""


class DirectoryInUse(QTransferError, RuntimeError):
    """A run directory is being written by another qtransfer process."""


class NonFiniteLoss(QTransferError, RuntimeError):
    """The training loss became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Work stopped by Ctrl-C or SIGTERM; what finished is saved, and the message says how to continue."""
