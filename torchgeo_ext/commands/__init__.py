"""Subcommands of the ``torchgeo-ext`` command line, one module each.

Each exposes ``add_parser(subparsers)`` and imports only the standard library at import time.
"""
