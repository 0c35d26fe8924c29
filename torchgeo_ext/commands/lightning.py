"""``torchgeo-ext fit|validate|test|predict``: TorchGeo's LightningCLI with this library's classes.

These behave exactly like ``torchgeo fit --config ...``. Importing
:mod:`torchgeo_ext.trainers` and :mod:`torchgeo_ext.datamodules` (every export) first makes
their classes known to jsonargparse, so configs may name them by short name
(``class_path: SuperYOLOTask``) as well as by full path.
"""

from __future__ import annotations

import argparse
from typing import Any

#: The Lightning subcommands forwarded to LightningCLI.
SUBCOMMANDS = ('fit', 'validate', 'test', 'predict')


def add_parser(subparsers: Any) -> None:
    """Register the Lightning subcommands (for ``--help``; parsing is LightningCLI's).

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    for name in SUBCOMMANDS:
        parser = subparsers.add_parser(
            name,
            help=f'{name} a model from a LightningCLI config (see `torchgeo-ext {name} --help`)',
            add_help=False,
        )
        parser.add_argument('args', nargs=argparse.REMAINDER)
        parser.set_defaults(
            run=lambda args, name=name: run_lightning([name, *args.args])
        )


def run_lightning(argv: list[str]) -> int:
    """Run TorchGeo's LightningCLI with this library's tasks and data modules loaded.

    Args:
        argv: The subcommand and its arguments, e.g. ``['fit', '--config', 'x.yaml']``.

    Returns:
        0 on success (LightningCLI exits by itself on argument errors).
    """
    import torchgeo.main

    import torchgeo_ext.datamodules
    import torchgeo_ext.trainers

    # The packages export lazily: resolve every name so that jsonargparse sees
    # each subclass (short class names in configs).
    for package in (torchgeo_ext.datamodules, torchgeo_ext.trainers):
        for name in package.__all__:
            getattr(package, name)
    torchgeo.main.main(argv)
    return 0
