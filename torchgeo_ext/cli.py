"""The ``torchgeo-ext`` console entry point: the parser and the error boundary of every command."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import pkgutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, cast

from . import __version__
from .errors import RECEIVED_SIGNALS, InputError, Interrupted, raise_if_interrupted

#: Signals turned into :class:`~torchgeo_ext.errors.Interrupted`.
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: File-system errors that are the user's to fix, reported in one line.
_USER_ERRNOS = frozenset(
    {
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EISDIR,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EIO,
        errno.EFBIG,
    }
)


def command_modules() -> list[str]:
    """List the subcommand modules of :mod:`torchgeo_ext.commands`.

    Returns:
        Module names, the Lightning subcommands first, then alphabetical.
    """
    from . import commands

    names = sorted(
        info.name
        for info in pkgutil.iter_modules(commands.__path__)
        if not info.name.startswith('_')
    )
    return sorted(names, key=lambda name: name != 'lightning')


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and a pointer to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the problem and exit with status 2.

        Args:
            message: What is wrong.
        """
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered.

    Returns:
        The top-level parser.
    """
    parser = Parser(
        prog='torchgeo-ext',
        description='Remote-sensing paper models for TorchGeo, with georeferenced outputs.',
    )
    parser.add_argument('--version', action='version', version=__version__)
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in command_modules():
        importlib.import_module(f'torchgeo_ext.commands.{name}').add_parser(subparsers)
    return parser


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`~torchgeo_ext.errors.Interrupted` in the block.

    The first signal raises; later ones are ignored so that the cleanup it
    starts is not itself interrupted. The signal is also recorded in
    :data:`~torchgeo_ext.errors.RECEIVED_SIGNALS`: an exception raised while C
    code was calling back into Python is lost ("unraisable"), so long loops
    check the record (:func:`~torchgeo_ext.errors.raise_if_interrupted`) and
    :func:`run_guarded` treats a command that ends after a signal as
    interrupted. Unraisable errors after a signal are consequences of it and
    are not printed. Child processes (data loader workers) keep the default
    behaviour. Previous handlers are restored on exit. Outside the main thread
    this does nothing (Python allows handlers there only).

    Yields:
        Nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()
    received = RECEIVED_SIGNALS
    received.clear()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != pid:
            # A forked worker: behave as if no handler were installed.
            signal.signal(signum, signal.SIG_DFL)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
            return
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    default_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        if not received:
            default_hook(info)

    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, handler)
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        sys.unraisablehook = default_hook
        received.clear()


def _one_line(error: BaseException) -> str | None:
    """The one-line message for an error that is the user's to fix, else None."""
    if isinstance(error, InputError):
        return str(error)
    if isinstance(error, OSError) and error.errno in _USER_ERRNOS:
        name = error.filename
        problem = error.strerror or str(error)
        return f'{name}: {problem}' if name else problem
    rasterio = sys.modules.get('rasterio.errors')
    cple = sys.modules.get('rasterio._err')
    if (rasterio is not None and isinstance(error, rasterio.RasterioError)) or (
        cple is not None and isinstance(error, cple.CPLE_BaseError)
    ):
        # GDAL's messages name the file (and the block) it failed on.
        message = ' '.join(str(error).split())
        cause = error.__cause__
        if 'See previous exception' in message and cause is not None:
            # rasterio's "Write failed. See previous exception for details.": the
            # cause is GDAL's own message.
            head = message.split('See previous exception')[0].strip().rstrip('.')
            message = f'{head}: {" ".join(str(cause).split())}'
        return message
    return None


def run_guarded(command: str, job: Callable[[], int]) -> int:
    """Run one subcommand inside the error boundary.

    * SIGINT and SIGTERM raise :class:`~torchgeo_ext.errors.Interrupted`
      (:func:`interrupts_raise`), so every writer on the way up cleans up; the
      command prints one line (``interrupted``) and exits 130 / 143.
    * The command's outputs form one
      :func:`~torchgeo_ext.export.atomic.output_transaction`: on any failure,
      outputs already renamed into place are removed (files they replaced are
      restored) and no temporary file or folder is left.
    * Bad input (:class:`~torchgeo_ext.errors.InputError`, a file system error
      naming a file, a GDAL read error) is one line on stderr, exit status 2.

    Before the job runs, :func:`check_declared` checks the outputs and device
    the subcommand declared.

    Args:
        command: The subcommand's name, for messages.
        job: What to run; returns the exit status.

    Returns:
        The exit status: the job's, 2 for bad input, 130/143 when interrupted.
    """
    from .export.atomic import output_transaction, remove_registered_temporaries

    with interrupts_raise():
        try:
            try:
                with output_transaction():
                    status = job()
                    # The signal's exception may have been lost in a C callback:
                    # whatever the job did after it is not trusted.
                    raise_if_interrupted()
                    return status
            finally:
                remove_registered_temporaries()
        except Interrupted as error:
            print('interrupted', file=sys.stderr)
            return error.exit_status
        except KeyboardInterrupt:
            print('interrupted', file=sys.stderr)
            return 128 + signal.SIGINT
        except Exception as error:
            if RECEIVED_SIGNALS:
                # A failure caused by a lost interruption (a write cut short).
                print('interrupted', file=sys.stderr)
                return Interrupted(RECEIVED_SIGNALS[0]).exit_status
            message = _one_line(error)
            if message is None:
                raise
            # Bad input is a user problem: one clear line, no traceback.
            print(f'torchgeo-ext {command}: error: {message}', file=sys.stderr)
            return 2


def check_declared(args: argparse.Namespace) -> None:
    """Check what a subcommand declared about its files and device, before it runs.

    Subcommands declare ``io_outputs``, a sequence of ``(dest, kind)`` pairs
    (kind as in :class:`~torchgeo_ext.export.outputs.Output`), and
    ``io_inputs``, the dests of the files they read, with
    ``parser.set_defaults``.

    Args:
        args: Parsed arguments.

    Raises:
        InvalidInputError: For an unsafe output or an unavailable device.
    """
    declared: Sequence[tuple[str, str]] = getattr(args, 'io_outputs', ())
    if declared:
        from .export.outputs import Output, check_local_output, check_outputs

        outputs = []
        for dest, kind in declared:
            value = getattr(args, dest, None)
            if value is not None:
                label = (
                    '-o/--output' if dest == 'output' else f'--{dest.replace("_", "-")}'
                )
                # Before Path(): it would make 's3://b/o.tif' the local 's3:/b/o.tif'.
                check_local_output(value, label)
                outputs.append(Output(Path(value), cast(Any, kind), label))
        inputs: list[Any] = []
        for dest in getattr(args, 'io_inputs', ()):
            value = getattr(args, dest, None)
            if isinstance(value, list | tuple):
                inputs.extend(value)
            elif value is not None:
                inputs.append(value)
        check_outputs(outputs, inputs)
    device = getattr(args, 'device', None)
    if isinstance(device, str):
        from .commands._options import check_device

        check_device(device)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``torchgeo-ext`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    # Lightning subcommands hand their arguments to LightningCLI untouched.
    lightning = importlib.import_module('torchgeo_ext.commands.lightning')
    if argv and argv[0] in lightning.SUBCOMMANDS:
        return run_guarded(argv[0], lambda: int(lightning.run_lightning(argv)))

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0

    def job() -> int:
        check_declared(args)
        status: int = args.run(args)
        return status

    return run_guarded(args.command, job)


if __name__ == '__main__':
    sys.exit(main())
