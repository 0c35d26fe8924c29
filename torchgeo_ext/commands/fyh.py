"""``torchgeo-ext fyh-build``: build the FYH cloud dataset from raw satellite files."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import non_negative_float, non_negative_int


def add_parser(subparsers: Any) -> None:
    """Register the ``fyh-build`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'fyh-build',
        help='build FYH cloud-type tiles from FY-4A AGRI L1 + Himawari L2 files',
        description=(
            'Calibrate FY-4A AGRI L1 4 km HDF5 scans, resample them onto the FYH '
            '0.05 degree grid (50N..5N, 85E..135E), pair each with the Himawari '
            'L2 cloud product inside its scan window, normalise and tile them '
            '(100 x 100, at most --max-fill fill pixels) into the .mat layout read by '
            'torchgeo_ext.datasets.FYH. Scenes with problems are skipped and listed.'
        ),
    )
    parser.add_argument(
        'fy4a_dir', metavar='FY4A_DIR', help='FY-4A AGRI L1 *.HDF files'
    )
    parser.add_argument(
        'himawari_dir', metavar='HIMAWARI_DIR', help='Himawari NC_H08_*_L2CLP*.nc files'
    )
    parser.add_argument(
        '-o', '--output', required=True, metavar='OUT', help='output dataset root'
    )
    parser.add_argument(
        '--split',
        choices=('train', 'test'),
        default='train',
        help='split folders to write (default: train)',
    )
    parser.add_argument(
        '--geotiff',
        action='store_true',
        help='also write one 14-band image + label GeoTIFF per scene (OUT/scenes)',
    )
    parser.add_argument(
        '--max-fill',
        type=non_negative_int,
        default=1250,
        metavar='N',
        help='keep a tile with at most N fill pixels (default: 1250, the paper)',
    )
    parser.add_argument(
        '--tolerance-minutes',
        type=non_negative_float,
        default=0.0,
        metavar='M',
        help='widen each scan window by M minutes when pairing (default: 0)',
    )
    parser.add_argument(
        '--progress', action='store_true', help='show a progress bar over the scans'
    )
    parser.set_defaults(
        run=run,
        io_outputs=(('output', 'directory'),),
        io_inputs=('fy4a_dir', 'himawari_dir'),
    )


def run(args: argparse.Namespace) -> int:
    """Build the dataset and print what was built and skipped.

    Args:
        args: Parsed arguments.

    Returns:
        0 when at least one scene was built, 1 otherwise.
    """
    import datetime as dt
    import warnings

    from ..converters.fyh import build_fyh

    with warnings.catch_warnings():
        # Skipped scenes are listed in the summary below.
        warnings.simplefilter('ignore', UserWarning)
        report = build_fyh(
            args.fy4a_dir,
            args.himawari_dir,
            args.output,
            split=args.split,
            geotiff=args.geotiff,
            max_fill=args.max_fill,
            tolerance=dt.timedelta(minutes=args.tolerance_minutes),
            progress=args.progress,
        )
    print(report.summary())
    return 0 if report.scenes else 1
