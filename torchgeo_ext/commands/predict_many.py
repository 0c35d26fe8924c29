"""``torchgeo-ext predict-many``: one checkpoint (or anomaly method) over many rasters."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import device_count, positive_int
from ._sources import REMOTE_HELP, add_assets_argument

#: Mirrors :data:`torchgeo_ext.pipelines.anomaly.METHODS` (``--help`` imports no torch).
METHODS = ('rx', 'lrx', 'crd', 'bsdm', 'stad')
#: Vector formats of detection outputs.
VECTOR_FORMATS = ('gpkg', 'geojson', 'parquet')


def add_parser(subparsers: Any) -> None:
    """Register the ``predict-many`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'predict-many',
        help='run a checkpoint or anomaly method over many rasters, on several '
        'devices or nodes -> one output each, manifest, VRT mosaic',
        description='Predict over many rasters (globs, folders, lists of paths or URLs, '
        'STAC item collections), one output per input, resumable, sharded across '
        'devices and nodes with Lightning Fabric.',
    )
    parser.add_argument(
        'inputs',
        nargs='+',
        metavar='INPUT',
        help='rasters, globs, folders, .txt lists (one path or URL a line) or STAC '
        'items/collections' + REMOTE_HELP,
    )
    add_assets_argument(parser)
    parser.add_argument('-o', '--output-dir', required=True, help='output folder')
    parser.add_argument(
        '--checkpoint', help='detection or segmentation checkpoint (or stad/bsdm)'
    )
    parser.add_argument(
        '--method', choices=METHODS, help='anomaly detector instead of a checkpoint'
    )
    parser.add_argument(
        '--vector-format',
        choices=VECTOR_FORMATS,
        default='gpkg',
        help='detection output format (default: gpkg)',
    )
    parser.add_argument('--tile-size', type=positive_int, help='tile side')
    parser.add_argument(
        '--batch-size', type=positive_int, default=4, help='tiles per model call'
    )
    parser.add_argument(
        '--devices',
        type=device_count,
        default=1,
        help='processes (devices) per node, or auto (default: 1; under torchrun: '
        'the processes it started)',
    )
    parser.add_argument(
        '--num-nodes', type=positive_int, default=1, help='nodes (default: 1)'
    )
    parser.add_argument(
        '--accelerator',
        default='auto',
        help='cpu, gpu, auto (Lightning accelerator, default: auto)',
    )
    parser.add_argument(
        '--progress', action='store_true', help='progress bar of each rank'
    )
    parser.set_defaults(
        run=run, io_outputs=(('output_dir', 'directory'),), io_inputs=('checkpoint',)
    )


def _job(args: argparse.Namespace, device: str) -> tuple[Any, list[str]]:
    """The function that predicts one input, and the suffix of its output."""
    from ..errors import InvalidInputError
    from ..pipelines.checkpoints import task_kind
    from ..trainers.base import task_class_path

    if args.method is not None:
        from ..pipelines.anomaly import anomaly_raster

        def anomaly(sources: list[str], outputs: list[Any]) -> None:
            if len(sources) != 1:
                raise InvalidInputError(
                    sources[0], f'anomaly reads one raster, got {len(sources)}'
                )
            options = {} if args.tile_size is None else {'tile_size': args.tile_size}
            anomaly_raster(
                sources[0],
                outputs[0],
                method=args.method,
                checkpoint=args.checkpoint,
                **options,
            )

        return anomaly, ['.tif']
    if args.checkpoint is None:
        raise InvalidInputError(None, 'give --checkpoint or --method')
    kind = task_kind(task_class_path(args.checkpoint))
    if kind == 'detection':
        from ..pipelines.checkpoint_detection import detect_with_checkpoint

        def detect(sources: list[str], outputs: list[Any]) -> None:
            detect_with_checkpoint(
                sources,
                outputs[0],
                args.checkpoint,
                tile_size=args.tile_size or 512,
                batch_size=args.batch_size,
                device=device,
            )

        return detect, [f'.{args.vector_format}']
    if kind == 'segmentation':
        from ..pipelines.segmentation import segment_raster

        def segment(sources: list[str], outputs: list[Any]) -> None:
            segment_raster(
                sources,
                outputs[0],
                args.checkpoint,
                tile_size=args.tile_size,
                batch_size=args.batch_size,
                device=device,
            )

        return segment, ['.tif']
    raise InvalidInputError(
        args.checkpoint,
        f'a {kind or "unknown"} checkpoint: predict-many runs detection and '
        'segmentation checkpoints (anomaly: --method)',
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``predict-many`` command.

    Args:
        args: Parsed arguments.

    Returns:
        0 when every input is done or skipped, 1 when some failed.
    """
    from ..errors import InvalidInputError
    from ..pipelines.batch import collect_inputs, launch_ranks, predict_many

    if args.checkpoint is not None and args.method not in (None, 'stad', 'bsdm'):
        raise InvalidInputError(None, f'--method {args.method} takes no --checkpoint')
    # Everything that can be wrong is checked before any process is started.
    inputs = collect_inputs(args.inputs, args.assets)
    fabric = launch_ranks(args.devices, args.num_nodes, args.accelerator)
    job, suffixes = _job(args, str(fabric.device))
    records = predict_many(
        inputs,
        args.output_dir,
        job,
        suffixes,
        rank=fabric.global_rank,
        world_size=fabric.world_size,
        barrier=fabric.barrier,
        progress=args.progress,
    )
    if records is None:
        return 0
    counts = {
        s: sum(r.status == s for r in records) for s in ('done', 'skipped', 'failed')
    }
    print(
        f'{counts["done"]} done, {counts["skipped"]} skipped (already complete), '
        f'{counts["failed"]} failed over {fabric.world_size} process(es); '
        f'manifest: {args.output_dir}/manifest.csv'
    )
    for record in records:
        if record.status == 'failed':
            print(f'failed: {record.input}: {record.error}')
    return 1 if counts['failed'] else 0
