"""``torchgeo-ext segment``: tiled semantic segmentation of georeferenced rasters."""

from __future__ import annotations

import argparse
from typing import Any

from ..pipelines.segmentation import DEFAULT_TILE_SIZE
from ._options import device, non_negative_float, non_negative_int, positive_int
from ._sources import REMOTE_HELP, add_assets_argument


def add_parser(subparsers: Any) -> None:
    """Register the ``segment`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'segment',
        help='tiled semantic segmentation of a raster -> class GeoTIFF (+ polygons)',
        description='Segment a georeferenced raster of any size tile by tile with a '
        'segmentation checkpoint of this library; write a uint8 class GeoTIFF with the '
        "input's CRS and transform and the class names in its metadata, and optionally "
        'the class regions as polygons.',
    )
    parser.add_argument(
        'inputs',
        nargs='+',
        metavar='INPUT',
        help='raster(s); several co-registered rasters are stacked as bands in order'
        + REMOTE_HELP,
    )
    add_assets_argument(parser)
    parser.add_argument('-o', '--output', required=True, help='class GeoTIFF to write')
    parser.add_argument(
        '--checkpoint', required=True, help='segmentation task checkpoint'
    )
    parser.add_argument(
        '--vector', help='also write class polygons (.gpkg, .geojson or .parquet)'
    )
    parser.add_argument(
        '--tile-size',
        type=positive_int,
        help='tile side fed to the model (default: the training tile size recorded '
        f'in the checkpoint, else {DEFAULT_TILE_SIZE})',
    )
    parser.add_argument(
        '--overlap',
        type=non_negative_int,
        help='overlap between tiles (default: a quarter of the tile)',
    )
    parser.add_argument(
        '--batch-size',
        type=positive_int,
        default=4,
        help='tiles per batch (default: 4)',
    )
    parser.add_argument(
        '--blend',
        choices=('cosine', 'linear', 'crop'),
        default='cosine',
        help='how overlapping tiles are combined (default: cosine)',
    )
    parser.add_argument(
        '--device', type=device, default='cpu', help='torch device (default: cpu)'
    )
    parser.add_argument(
        '--precision',
        choices=('32', '16-mixed', 'bf16-mixed'),
        default='32',
        help="model precision, as Lightning names it: '16-mixed' and 'bf16-mixed' "
        'run the model under autocast (default: 32)',
    )
    parser.add_argument(
        '--min-area',
        type=non_negative_float,
        default=0,
        help='drop polygons smaller than this many pixels (default: 0)',
    )
    parser.add_argument('--progress', action='store_true', help='show a progress bar')
    parser.set_defaults(
        run=run,
        io_outputs=(('output', 'raster'), ('vector', 'vector')),
        io_inputs=('inputs', 'checkpoint'),
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``segment`` command.

    Args:
        args: Parsed arguments.

    Returns:
        0 on success.
    """
    from ..errors import InvalidInputError
    from ..export.sources import recording_sources
    from ..export.stac import resolve_inputs

    for name in ('tile_size', 'batch_size'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise InvalidInputError(
                None, f'--{name.replace("_", "-")} must be positive'
            )
    if args.overlap is not None and args.overlap < 0:
        raise InvalidInputError(None, '--overlap must not be negative')
    inputs = resolve_inputs(args.inputs, args.assets)
    with recording_sources(inputs):
        result = _segment(args, inputs)
    total = sum(result.counts.values()) or 1
    summary = ', '.join(
        f'{result.class_names[k]} {100 * n / total:.1f}%'
        for k, n in sorted(result.counts.items(), key=lambda kv: -kv[1])
    )
    print(f'classes: {result.output} ({summary or "no valid pixel"})')
    if result.vector is not None:
        print(f'polygons: {result.vector} ({result.polygons} regions)')
    return 0


def _segment(args: argparse.Namespace, inputs: list[Any]) -> Any:
    from ..pipelines.segmentation import segment_raster

    return segment_raster(
        inputs,
        args.output,
        args.checkpoint,
        vector=args.vector,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        blend=args.blend,
        device=args.device,
        precision=args.precision,
        min_area=args.min_area,
        progress=args.progress,
    )
