"""``torchgeo-ext detect``: run a trained detector over georeferenced rasters."""

from __future__ import annotations

import argparse
from typing import Any

from ..pipelines.checkpoint_detection import DEFAULT_OVERLAP
from ._options import (
    band_numbers,
    device,
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
    unit_float,
)
from ._sources import REMOTE_HELP, add_assets_argument


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
        help='raster(s), one per modality, in the training band order' + REMOTE_HELP,
    )
    add_assets_argument(parser)
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
    _add_input_options(parser)
    parser.add_argument(
        '--batch-size', type=positive_int, default=4, help='tiles per model call'
    )
    parser.add_argument(
        '--device', type=device, default='cpu', help='torch device (default: cpu)'
    )
    parser.add_argument('--progress', action='store_true', help='show a progress bar')
    parser.add_argument(
        '--precision',
        choices=('32', '16-mixed', 'bf16-mixed'),
        default='32',
        help='model precision, as Lightning names it: 32 (default), or mixed '
        'float16/bfloat16 run by autocast (fastest on GPUs)',
    )
    parser.add_argument(
        '--max-invalid',
        type=unit_float,
        default=0.5,
        help='drop objects whose box has more than this share of nodata pixels '
        '(any band; default: 0.5); the count is printed',
    )
    parser.add_argument(
        '--engine',
        choices=('torch', 'onnxruntime'),
        default='torch',
        help='how a SuperYOLO checkpoint runs: torch (fused eager model, default) '
        'or onnxruntime (the fused model exported to ONNX Runtime, CPU only; '
        "pip install 'torchgeo-ext[onnx]')",
    )
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


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    """Register the options that choose the bands and scale the values the model gets.

    Args:
        parser: The ``detect`` parser.
    """
    parser.add_argument(
        '--scale',
        type=positive_float,
        default=None,
        help='only for older checkpoints that record no normalisation: raster '
        'values are divided by this before the model (default: 255)',
    )
    parser.add_argument(
        '--bands',
        type=band_numbers,
        default=None,
        help='1-based bands of the stacked rasters the model reads, in its training '
        'order, e.g. 1 for the VV band of a Sentinel-1 VV,VH GeoTIFF with a '
        'single-band SAR model (default: all bands)',
    )
    parser.add_argument(
        '--value-range',
        type=finite_float,
        nargs=2,
        metavar=('LOW', 'HIGH'),
        default=None,
        help="raster values LOW..HIGH become the model's inputs 0..1 (clipped), "
        "instead of the checkpoint's normalisation: for rasters in other units "
        'than the training images, e.g. 0 1000 for a uint16 Sentinel-1 GRD or '
        '-25 5 for dB with a model trained on 8-bit SAR amplitude',
    )


def run(args: argparse.Namespace) -> int:
    """Run detection and write the vector file.

    Args:
        args: Parsed arguments.

    Returns:
        0 on success.

    Raises:
        InvalidInputError: For inconsistent options (the pipeline raises it
            for bad inputs).
    """
    from ..errors import InvalidInputError
    from ..export.sources import recording_sources
    from ..export.stac import resolve_inputs
    from ..pipelines.checkpoint_detection import default_overlap
    from ..pipelines.tiling import check_tiling

    if args.scale is not None and args.scale <= 0:
        raise InvalidInputError(None, f'--scale must be positive, got {args.scale}')
    if args.scale is not None and args.value_range is not None:
        raise InvalidInputError(
            None, '--scale and --value-range both set the input scaling; give one'
        )
    overlap = default_overlap(args.tile_size) if args.overlap is None else args.overlap
    try:
        check_tiling(args.tile_size, overlap, args.batch_size)
    except InvalidInputError as err:  # name the options the user gave
        raise InvalidInputError(
            None, f'--tile-size {args.tile_size}, --overlap {overlap}: {err.problem}'
        ) from None
    sam_bands = _sam_options(args)
    inputs = resolve_inputs(args.inputs, args.assets)
    with recording_sources(inputs):
        gdf = _detect(args, inputs, overlap, sam_bands)
    dropped = gdf.attrs.get('dropped_invalid', 0)
    print(
        f'{len(gdf)} objects written to {args.output}; {dropped} dropped over '
        f'nodata (more than {args.max_invalid:g} of their box)'
    )
    return 0


def _detect(
    args: argparse.Namespace, inputs: list[Any], overlap: int, sam_bands: Any
) -> Any:
    from ..pipelines.checkpoint_detection import detect_with_checkpoint

    return detect_with_checkpoint(
        inputs,
        args.output,
        args.checkpoint,
        tile_size=args.tile_size,
        overlap=overlap,
        batch_size=args.batch_size,
        iou_threshold=args.iou,
        score_threshold=args.score_threshold,
        scale=args.scale,
        device=args.device,
        progress=args.progress,
        sam_checkpoint=args.sam_checkpoint if args.masks == 'sam' else None,
        sam_model=args.sam_model,
        sam_bands=sam_bands,
        engine=args.engine,
        precision=args.precision,
        max_invalid=args.max_invalid,
        bands=args.bands,
        value_range=None if args.value_range is None else tuple(args.value_range),
    )


def _sam_options(args: argparse.Namespace) -> list[int] | None:
    """Check the ``--masks``/``--sam-*`` options.

    Args:
        args: Parsed arguments.

    Returns:
        The 1-based SAM bands, if given.

    Raises:
        InvalidInputError: For inconsistent options.
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
        return None
    if args.sam_checkpoint is None:
        raise InvalidInputError(
            None, '--masks sam needs --sam-checkpoint (e.g. sam_vit_b_01ec64.pth)'
        )
    from ..pipelines.sam import parse_bands

    return parse_bands(args.sam_bands) if args.sam_bands is not None else None
