"""Subcommands of the ``torchgeo-ext`` command line, one module each.

Every module exposes ``add_parser(subparsers)``, which registers an argparse
parser whose ``run`` default is called with the parsed arguments. Modules
import only the standard library at import time so that ``--help`` is fast.
"""
