"""``torchgeo-ext detect``: run a trained detector over georeferenced rasters.

Example::

    torchgeo-ext detect RGB.tif IR.tif -o vehicles.gpkg --checkpoint superyolo.ckpt

The rasters (one per modality, co-registered: same CRS, transform and size)
are stacked band-wise in the order given, normalised as in training (the
per-band offset and scale the checkpoint recorded from its data module; for
older checkpoints that record none, divided by ``--scale``, default 255) and
cut into overlapping tiles; boxes are merged across tiles and written with
``class_id``, ``class_name`` and ``score`` columns in the raster's CRS
(GeoPackage, GeoJSON or GeoParquet by extension). Any detection task of this
library works, axis-aligned (SuperYOLO, GHOST) or oriented (LMA, E2E-MFD).

With ``--masks sam --sam-checkpoint sam_vit_b_01ec64.pth`` each object, once
merged across tiles, is outlined by Segment Anything prompted with its box
(an oriented box's hull) on a window of the rasters that holds it whole (see
:func:`torchgeo_ext.pipelines.sam.refine_with_sam`): the vector file gets the
outline as geometry and keeps the box as the ``box_wkt`` attribute, with
``sam_score`` and ``sam_status``. SAM reads three bands: the rasters' own if
they have three, else those given by ``--sam-bands`` (e.g. ``1,2,3``).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..options import device, non_negative_int, positive_float, positive_int, unit_float

#: Largest default tile overlap (a quarter of the tile below 512).
DEFAULT_OVERLAP = 128


def add_parser(subparsers: Any) -> None:
    """Register the ``detect`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'detect',
        help='detect objects in rasters with a trained checkpoint -> vector file',
        description='Run a trained detection checkpoint over co-registered rasters '
        '(e.g. RGB.tif IR.tif) of any size and write the boxes, with class names '
        "and scores, as polygons in the rasters' CRS.",
    )
    parser.add_argument(
        'inputs',
        nargs='+',
        help='raster(s), one per modality, in the training band order',
    )
    parser.add_argument(
        '-o', '--output', required=True, help='vector file (.gpkg, .geojson, .parquet)'
    )
    parser.add_argument('--checkpoint', required=True, help='trained task checkpoint')
    parser.add_argument(
        '--tile-size', type=positive_int, default=512, help='tile side (default: 512)'
    )
    parser.add_argument(
        '--overlap',
        type=non_negative_int,
        help='minimum tile overlap, below the tile size (default: a quarter of the '
        f'tile, at most {DEFAULT_OVERLAP})',
    )
    parser.add_argument(
        '--iou',
        type=unit_float,
        default=0.5,
        help='cross-tile NMS IoU threshold (default: 0.5)',
    )
    parser.add_argument(
        '--score-threshold',
        type=unit_float,
        default=0.25,
        help='minimum detection score (default: 0.25)',
    )
    parser.add_argument(
        '--scale',
        type=positive_float,
        default=None,
        help='only for older checkpoints that record no normalisation: raster '
        'values are divided by this before the model (default: 255)',
    )
    parser.add_argument(
        '--batch-size', type=positive_int, default=4, help='tiles per model call'
    )
    parser.add_argument(
        '--device', type=device, default='cpu', help='torch device (default: cpu)'
    )
    parser.add_argument('--progress', action='store_true', help='show a progress bar')
    parser.add_argument(
        '--masks',
        choices=('sam',),
        default=None,
        help='outline each object with Segment Anything (sam): the outline becomes '
        'the geometry, the box the box_wkt attribute',
    )
    parser.add_argument(
        '--sam-checkpoint',
        help='SAM state dict for --masks sam (e.g. sam_vit_b_01ec64.pth)',
    )
    parser.add_argument(
        '--sam-model',
        choices=('vit_b', 'vit_l', 'vit_h'),
        default=None,
        help='SAM variant of --sam-checkpoint (default: the one it holds)',
    )
    parser.add_argument(
        '--sam-bands',
        help='three 1-based bands of the stacked rasters that SAM reads as RGB, '
        'e.g. 1,2,3 (needed unless the rasters have three bands)',
    )
    parser.set_defaults(
        run=run, io_outputs=(('output', 'vector'),), io_inputs=('inputs', 'checkpoint')
    )


def run(args: argparse.Namespace) -> int:
    """Run detection and write the vector file.

    Args:
        args: Parsed arguments.

    Returns:
        0 on success.

    Raises:
        InvalidInputError: If the rasters have the wrong number of bands.
    """
    import torch
    from torch import Tensor

    from ..errors import InvalidInputError
    from ..export.raster import open_inputs
    from ..pipelines.checkpoints import load_task_for
    from ..pipelines.detection import detect_raster

    if args.scale is not None and args.scale <= 0:
        raise InvalidInputError(None, f'--scale must be positive, got {args.scale}')
    overlap = (
        min(DEFAULT_OVERLAP, args.tile_size // 4)
        if args.overlap is None
        else args.overlap
    )
    if overlap >= args.tile_size:
        raise InvalidInputError(
            None,
            f'--overlap ({overlap}) must be smaller than --tile-size ({args.tile_size})',
        )
    # SAM options are checked, and SAM loaded, before any detection work.
    sam, sam_bands = _load_sam(args)
    # The kind of checkpoint is named before anything looks at bands.
    task: Any = load_task_for(args.checkpoint, 'detection', args.device)
    task.to(args.device)
    record = getattr(task, 'normalisation', None)
    if record is not None and args.scale is not None:
        raise InvalidInputError(
            args.checkpoint,
            f'records its normalisation ({record}); --scale is only for checkpoints '
            'without one',
        )
    scale = 255.0 if args.scale is None else args.scale
    hparams = task.hparams
    if 'score_threshold' in hparams:
        hparams['score_threshold'] = min(
            args.score_threshold, hparams['score_threshold']
        )

    expected = _expected_bands(task)
    with open_inputs(args.inputs) as stack:
        bands = int(stack.count)
    if expected is not None and bands != expected:
        # Too many bands is as wrong as too few: an extra raster would be read
        # as the wrong modality.
        listed = ', '.join(str(p) for p in args.inputs)
        raise InvalidInputError(
            args.inputs[-1],
            f'the rasters ({listed}) have {bands} bands in all but the model reads '
            f'{expected} ({args.checkpoint}); give exactly the modalities the '
            'model was trained on, in the training order',
        )

    if sam is not None:
        from ..pipelines.sam import check_sam_bands

        check_sam_bands(bands, sam_bands, args.inputs[-1])

    def model(x: Tensor) -> list[dict[str, Tensor]]:
        x = task.normalise(x) if record is not None else x.float() / scale
        if hasattr(task, 'detect_images'):
            results: list[dict[str, Tensor]] = task.detect_images(x, normalised=True)
            return results
        out = task.predict_step({'image': x}, 0)
        if isinstance(out, dict):
            keys = [k for k in out if k.startswith('prediction_')]
            return [dict(zip(keys, values)) for values in zip(*(out[k] for k in keys))]
        return list(out)

    names = getattr(task, 'class_names', None) or hparams.get('class_names')
    with torch.inference_mode():
        gdf = detect_raster(
            model,
            args.inputs,
            None if sam is not None else args.output,
            tile_size=args.tile_size,
            overlap=overlap,
            batch_size=args.batch_size,
            iou_threshold=args.iou,
            class_names=list(names) if names is not None else None,
            oriented=bool(getattr(task, 'oriented', False)),
            score_threshold=args.score_threshold,
            device=args.device,
            progress=args.progress,
        )
    if sam is not None:
        from ..pipelines.sam import refine_with_sam

        gdf = refine_with_sam(
            gdf,
            args.inputs,
            sam,
            bands=sam_bands,
            device=args.device,
            output=args.output,
            progress=args.progress,
        )
    print(f'{len(gdf)} objects written to {args.output}')
    return 0


def _load_sam(args: argparse.Namespace) -> tuple[Any, list[int] | None]:
    """Check the ``--masks``/``--sam-*`` options and load SAM when asked.

    Args:
        args: Parsed arguments.

    Returns:
        The SAM model (None without ``--masks sam``) and the 1-based SAM bands.

    Raises:
        InvalidInputError: For inconsistent options or a bad SAM checkpoint.
    """
    from ..errors import InvalidInputError

    if args.masks != 'sam':
        given = [
            name
            for name, value in (
                ('--sam-checkpoint', args.sam_checkpoint),
                ('--sam-model', args.sam_model),
                ('--sam-bands', args.sam_bands),
            )
            if value is not None
        ]
        if given:
            raise InvalidInputError(None, f'{", ".join(given)} needs --masks sam')
        return None, None
    if args.sam_checkpoint is None:
        raise InvalidInputError(
            None, '--masks sam needs --sam-checkpoint (e.g. sam_vit_b_01ec64.pth)'
        )
    from ..models.sam import load_sam
    from ..pipelines.sam import parse_bands

    bands = parse_bands(args.sam_bands) if args.sam_bands is not None else None
    sam = load_sam(args.sam_checkpoint, args.sam_model)
    sam.to(args.device)
    return sam, bands


def _expected_bands(task: Any) -> int | None:
    """Number of input bands a task reads, when it can tell.

    Args:
        task: A loaded task.

    Returns:
        The band count, or None if unknown.
    """
    detector = getattr(task, 'detector', None)
    bands = getattr(detector, 'bands', None)
    if bands:
        return int(max(bands)) + 1
    in_channels = task.hparams.get('in_channels')
    return int(in_channels) if isinstance(in_channels, int) else None
