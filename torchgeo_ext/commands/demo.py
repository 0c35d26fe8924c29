"""``torchgeo-ext demo``: the main jobs on built-in synthetic scenes, no download."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import at_least, non_negative_int, positive_int
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
        'ROC AUC against the implanted truth. With --task detection: build synthetic RGB + '
        'IR scenes with vehicles (labels as a GeoPackage in EPSG:4326), train a small '
        'SuperYOLO on the CPU, detect on an unseen scene and print mAP@0.5.',
    )
    parser.add_argument(
        '--task',
        choices=('anomaly', 'detection'),
        default='anomaly',
        help='anomaly (default): hyperspectral anomaly detectors; detection: train '
        'and run SuperYOLO on RGB + IR scenes with vector labels',
    )
    parser.add_argument(
        '-o',
        '--output',
        default='demo_output',
        help='output directory (default: demo_output): new, empty, or made by an '
        'earlier demo (whose files are replaced); any other non-empty folder is '
        'refused, so that no file of yours is overwritten',
    )
    parser.add_argument(
        '--methods',
        default='rx,lrx,crd,bsdm',
        help=f'comma-separated methods among {", ".join(m for m in METHODS if m != "stad")} '
        '(default: rx,lrx,crd,bsdm)',
    )
    parser.add_argument(
        '--size',
        type=at_least(8),
        default=None,
        help='scene side in pixels (>= 8; default: 128, detection 512, >= 128)',
    )
    parser.add_argument(
        '--steps',
        type=positive_int,
        default=200,
        help='detection: training steps of 8 patches (default: 200, about a minute)',
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
    from ..errors import InvalidInputError

    if args.task == 'detection':
        return _run_detection(args)
    from ..demos.anomaly import run_demo

    if args.size is None:
        args.size = 128
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


def _run_detection(args: argparse.Namespace) -> int:
    """Run the detection demo (``--task detection``) and print its outputs."""
    from ..demos.detection import DEMO_CRS, LABEL_CRS, run_detection_demo
    from ..errors import InvalidInputError

    size = 512 if args.size is None else args.size
    if size < 128:
        raise InvalidInputError(
            None, f'--size: the detection demo needs >= 128, got {size}'
        )
    print(
        f'Building two {size} x {size} RGB + IR scenes with vehicles, training a small '
        f'SuperYOLO for {args.steps} steps on the CPU...'
    )
    result = run_detection_demo(
        args.output, size=size, steps=args.steps, seed=args.seed
    )
    print(f'training   {result.train_rgb}, {result.train_ir}  ({DEMO_CRS})')
    print(f'labels     {result.labels}  ({LABEL_CRS})')
    print(
        f'checkpoint {result.checkpoint}  ({result.steps} steps in '
        f'{result.fit_seconds:.0f} s, loss {result.first_loss:.2f} -> '
        f'{result.last_loss:.2f})'
    )
    print(f'unseen     {result.test_rgb}, {result.test_ir}')
    print(
        f'detections {result.detections}  {result.detected} vehicles '
        f'({result.truth} painted)'
    )
    print(f'quicklook  {result.quicklook}')
    print(f'mAP@0.5    {result.map50:.3f}  (against the painted vehicles)')
    return 0
