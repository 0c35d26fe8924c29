"""Exceptions raised for bad user input."""

from __future__ import annotations

import os


class InputError(Exception):
    """A problem with user input: a file, its contents or an option.

    The command line turns it into one clear line (naming the file and the
    problem) instead of a traceback. Library code raises its subclasses, which
    are also ordinary ``ValueError``/``FileNotFoundError``, so callers in
    notebooks can catch them the usual way.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        """Initialise a new InputError.

        Args:
            path: The offending file (or None when no file is involved).
            problem: What is wrong, and where there is one, the fix.
        """
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f'{self.path}: {problem}')


class InvalidInputError(InputError, ValueError):
    """A file exists but its contents are unusable (wrong bands, no CRS, ...)."""


class MissingInputError(InputError, FileNotFoundError):
    """A file that is needed does not exist."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while a command ran.

    Raised from the command line's signal handler so that every ``with`` block
    on the way up (atomic outputs, temporary folders, open rasters) cleans up
    as for any other error. It derives from :class:`BaseException`, like
    :class:`KeyboardInterrupt`, so ``except Exception`` does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        """Initialise a new Interrupted.

        Args:
            signum: The signal number received.
        """
        self.signum = int(signum)
        super().__init__(f'interrupted by signal {self.signum}')

    @property
    def exit_status(self) -> int:
        """The conventional shell exit status, 128 + the signal number (130, 143)."""
        return 128 + self.signum


#: Signals turned into :class:`Interrupted` by the command line's handler during
#: the running command (see :func:`torchgeo_ext.cli.interrupts_raise`).
RECEIVED_SIGNALS: list[int] = []


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` again if a signal arrived during this command.

    An exception raised by a signal handler while a C library was calling back
    into Python (GDAL's error handler, a file opener) is reported as
    "unraisable" and lost. Long loops call this between steps so that the
    command still stops soon after the signal.

    Raises:
        Interrupted: If a signal was received.
    """
    if RECEIVED_SIGNALS:
        raise Interrupted(RECEIVED_SIGNALS[0])
