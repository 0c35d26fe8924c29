"""``torchgeo-ext demo``: the main job on a built-in sample scene, no download.

Example::

    torchgeo-ext demo --output demo_output
"""

from __future__ import annotations

import argparse
from typing import Any

from ..options import at_least, non_negative_int
from .anomaly import METHODS


def add_parser(subparsers: Any) -> None:
    """Register the ``demo`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'demo',
        help='run the main job on a built-in georeferenced hyperspectral scene',
        description='Build a small synthetic hyperspectral scene in UTM (EPSG:32633) with '
        'implanted sub-pixel targets, detect anomalies with several methods, and write '
        'score GeoTIFFs, RX anomaly polygons (GeoPackage), a PNG quicklook and a table of '
        'ROC AUC against the implanted truth.',
    )
    parser.add_argument(
        '-o',
        '--output',
        default='demo_output',
        help='output directory (default: demo_output)',
    )
    parser.add_argument(
        '--methods',
        default='rx,lrx,crd,bsdm',
        help=f'comma-separated methods among {", ".join(m for m in METHODS if m != "stad")} '
        '(default: rx,lrx,crd,bsdm)',
    )
    parser.add_argument(
        '--size', type=at_least(8), default=128, help='scene side in pixels (>= 8)'
    )
    parser.add_argument(
        '--bands', type=at_least(2), default=50, help='scene band count (>= 2)'
    )
    parser.add_argument('--seed', type=non_negative_int, default=0, help='random seed')
    parser.set_defaults(run=run, io_outputs=(('output', 'directory'),))


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where its outputs are.

    Args:
        args: Parsed arguments.

    Returns:
        0 on success.
    """
    from ..demo import run_demo
    from ..errors import InvalidInputError

    methods = tuple(m.strip() for m in args.methods.split(',') if m.strip())
    unknown = [m for m in methods if m not in METHODS or m == 'stad']
    if unknown or not methods:
        raise InvalidInputError(
            None,
            f'--methods: unknown or unsupported method(s) {unknown} (stad needs a checkpoint)',
        )
    print(
        f'Building a {args.size} x {args.size} x {args.bands} scene and running {", ".join(methods)}...'
    )
    result = run_demo(
        args.output, methods=methods, size=args.size, bands=args.bands, seed=args.seed
    )
    print(f'scene      {result.scene}  (EPSG:32633, implanted sub-pixel targets)')
    for m in result.methods:
        print(f'{m.method:<10} {m.scores}  ROC AUC {m.auc:.4f}  ({m.seconds:.1f} s)')
        if m.vector is not None:
            print(f'{"":<10} {m.vector}  {m.regions} anomaly polygons')
    print(f'quicklook  {result.quicklook}')
    print(f'table      {result.table}')
    return 0
