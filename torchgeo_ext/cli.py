"""The ``torchgeo-ext`` console entry point.

Each subcommand lives in :mod:`torchgeo_ext.commands` as a module exposing
``add_parser(subparsers)`` and ``run(args) -> int``. Parsers are built from
argparse alone; torch, lightning and torchgeo are imported only inside the
command that runs, so ``torchgeo-ext --help`` starts in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__
from .errors import InputError


def command_modules() -> list[str]:
    """List the subcommand modules of :mod:`torchgeo_ext.commands`.

    Returns:
        Module names, the Lightning subcommands first, then alphabetical.
    """
    from . import commands

    names = sorted(info.name for info in pkgutil.iter_modules(commands.__path__))
    return sorted(names, key=lambda name: name != 'lightning')


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered.

    Returns:
        The top-level parser.
    """
    parser = argparse.ArgumentParser(
        prog='torchgeo-ext',
        description='Remote-sensing paper models for TorchGeo, with georeferenced outputs.',
    )
    parser.add_argument('--version', action='version', version=__version__)
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in command_modules():
        importlib.import_module(f'torchgeo_ext.commands.{name}').add_parser(subparsers)
    return parser


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
        return lightning.run_lightning(argv)

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        status: int = args.run(args)
    except InputError as error:
        # Bad input is a user problem: one clear line, no traceback.
        print(f'torchgeo-ext {args.command}: error: {error}', file=sys.stderr)
        return 2
    return status


if __name__ == '__main__':
    sys.exit(main())
