"""``torchgeo-ext anomaly``: hyperspectral anomaly detection over a scene file."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import (
    device,
    non_negative_float,
    non_negative_int,
    odd_positive_int,
    open_unit_float,
    positive_int,
)
from ._sources import REMOTE_HELP, add_assets_argument

#: Mirrors :data:`torchgeo_ext.pipelines.anomaly.METHODS` (kept here so ``--help`` imports no torch).
METHODS = ('rx', 'lrx', 'crd', 'bsdm', 'stad', 'sap')


def add_parser(subparsers: Any) -> None:
    """Register the ``anomaly`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'anomaly',
        help='hyperspectral anomaly detection (RX, LRX, CRD, BSDM, STAD, SAP) -> score GeoTIFF',
        description='Score every pixel of a hyperspectral scene (GeoTIFF, ENVI or .mat) '
        'for anomaly and write a score GeoTIFF with the input CRS and transform; '
        'optionally write the most anomalous regions as polygons.',
    )
    parser.add_argument(
        'input', help='scene: GeoTIFF, ENVI (.hdr or data file) or .mat' + REMOTE_HELP
    )
    add_assets_argument(parser)
    parser.add_argument('-o', '--output', required=True, help='score GeoTIFF to write')
    parser.add_argument(
        '--method', choices=METHODS, default='rx', help='detector (default: rx)'
    )
    parser.add_argument(
        '--checkpoint',
        help='trained model (required for stad; bsdm and sap fit themselves '
        'otherwise; refused by rx, lrx and crd)',
    )
    parser.add_argument(
        '--align-bands',
        action='store_true',
        help='with --checkpoint: align a scene whose band count differs from the '
        "checkpoint's (bsdm: reflect padding or random band groups; stad: the first "
        'bands); without it such a scene is refused',
    )
    parser.add_argument(
        '--vector', help='also write anomaly polygons (.gpkg, .geojson or .parquet)'
    )
    parser.add_argument(
        '--threshold',
        type=open_unit_float,
        metavar='Q',
        help='with --vector: quantile of the scores above which a pixel is '
        'anomalous (default: 0.999)',
    )
    parser.add_argument(
        '--min-area',
        type=non_negative_float,
        help='with --vector: drop polygons smaller than this many pixels',
    )
    parser.add_argument(
        '--tile-size',
        type=positive_int,
        default=512,
        help='most rows per streamed strip (default: 512; fewer when a strip '
        'would exceed 8 MB of input)',
    )
    parser.add_argument(
        '--device',
        type=device,
        default='cpu',
        help='torch device of the detector (default: cpu)',
    )
    parser.add_argument(
        '--inner', type=odd_positive_int, help='lrx/crd guard window side (odd)'
    )
    parser.add_argument(
        '--outer', type=odd_positive_int, help='lrx/crd outer window side (odd)'
    )
    parser.add_argument(
        '--iterations', type=positive_int, help='bsdm training iterations'
    )
    parser.add_argument(
        '--batch-size',
        type=positive_int,
        metavar='N',
        help='bsdm pixels per training step (default: every pixel on scenes of up '
        'to 4096 pixels, else random mini-batches of 4096 pixels: a 256 x 256 scene '
        'in about a minute on 2 CPU cores)',
    )
    parser.add_argument(
        '--full-batch',
        action='store_true',
        help="bsdm: every pixel in every training step, the authors' setting (a "
        '256 x 256 scene: about 12 minutes and 3 GB on 2 CPU cores). The AUC of '
        'each setting on the benchmark scenes: docs/models/anomaly.md',
    )
    parser.add_argument(
        '--fit-pixels',
        type=positive_int,
        metavar='N',
        help='bsdm/sap: most pixels the model is fitted on, a seeded sample drawn '
        'while the scene streams (bsdm: pixels, default 65536; sap: whole 64 x 64 '
        'tiles, default 16384); a scene with fewer is fitted on whole, as in memory',
    )
    parser.add_argument('--seed', type=non_negative_int, help='bsdm/sap random seed')
    parser.add_argument('--progress', action='store_true', help='show a progress bar')
    parser.set_defaults(
        run=run,
        io_outputs=(('output', 'raster'), ('vector', 'vector')),
        io_inputs=('input', 'checkpoint'),
    )


def run(args: argparse.Namespace) -> int:
    """Run anomaly detection.

    Args:
        args: Parsed arguments.

    Returns:
        0 on success.
    """
    for name in ('threshold', 'min_area'):
        if getattr(args, name) is not None and args.vector is None:
            flag = f'--{name.replace("_", "-")}'
            raise _option_error(
                f'{flag} applies to the --vector polygons: add --vector'
            )
    if args.align_bands and args.checkpoint is None:
        raise _option_error('--align-bands applies to a --checkpoint: add one')
    threshold = 0.999 if args.threshold is None else args.threshold
    options: dict[str, Any] = {}
    for name in ('inner', 'outer'):
        if getattr(args, name) is not None:
            if args.method not in ('lrx', 'crd'):
                raise _option_error(f'--{name} applies to lrx and crd only')
            options[name] = getattr(args, name)
    if args.full_batch:
        if args.batch_size is not None:
            raise _option_error('--full-batch and --batch-size exclude each other')
        args.batch_size = 'full'
    for name in ('iterations', 'seed', 'batch_size', 'fit_pixels'):
        if getattr(args, name) is not None:
            methods = ('bsdm', 'sap') if name in ('seed', 'fit_pixels') else ('bsdm',)
            if args.method not in methods:
                flag = f'--{name.replace("_", "-")}'
                raise _option_error(f'{flag} applies to {" and ".join(methods)} only')
            options[name] = getattr(args, name)
    if args.method == 'bsdm':
        # Measured over 5 seeds and 4 scenes (benchmarks/anomaly.md): users should know.
        print(
            'note: bsdm does not beat rx on our benchmark scenes (benchmarks/anomaly.md)'
        )
        if args.checkpoint is None:
            print(_BSDM_COST)
    from ..export.sources import recording_sources
    from ..export.stac import resolve_inputs

    inputs = resolve_inputs([args.input], args.assets)
    if len(inputs) != 1:
        names = ', '.join(getattr(p, 'key', str(p)) for p in inputs)
        raise _option_error(
            f'anomaly reads one raster but the STAC item gives {len(inputs)} '
            f'({names}): choose one with --assets'
        )
    with recording_sources(inputs):
        result = _anomaly(args, inputs[0], threshold, options)
    for note in result.notes:
        print(f'note: {note}')
    if result.crs is None:
        print(
            f'note: {args.input} has no georeferencing (.mat); '
            f'{result.scores} is in pixel coordinates without a CRS'
        )
    print(f'scores ({args.method}): {result.scores}')
    if result.vector is not None:
        print(
            f'polygons: {result.vector} ({result.regions} regions above the '
            f'{threshold} quantile, score > {result.threshold:.6g})'
        )
    return 0


def _anomaly(
    args: argparse.Namespace, source: Any, threshold: float, options: dict[str, Any]
) -> Any:
    from ..pipelines.anomaly import anomaly_raster

    return anomaly_raster(
        source,
        args.output,
        method=args.method,
        checkpoint=args.checkpoint,
        vector=args.vector,
        threshold=threshold,
        min_area=args.min_area or 0,
        tile_size=args.tile_size,
        progress=args.progress,
        device=args.device,
        align_bands=args.align_bands,
        **options,
    )


#: Said before BSDM starts, since its default takes minutes on a CPU: the cost and the faster settings.
_BSDM_COST = (
    'note: bsdm fits itself on the scene first (500 steps of up to 4096 pixels of '
    'a sample of up to 65536 by default): a 256 x 256 x 50 scene took 10 minutes '
    'of CPU time and 1 GB above the imports on our 2 shared CPU cores '
    '(benchmarks/anomaly_scale.md); faster: --iterations 100 or --batch-size 1024; '
    '--progress shows the time left'
)


def _option_error(problem: str) -> Exception:
    from ..errors import InvalidInputError

    return InvalidInputError(None, problem)
