"""``torchgeo-ext tdds``: write a TDDS-pruned sample-index list from recorded dynamics."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import count_or_fraction, open_unit_float, positive_int


def add_parser(subparsers: Any) -> None:
    """Register the ``tdds`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'tdds',
        help='TDDS dataset pruning: recorded dynamics -> kept sample indices',
        description='Score training samples with Temporal Dual-Depth Scoring from '
        'the softmax outputs a TDDSRecorder saved, and write the indices of the '
        'top-scoring samples (best first), one per line.',
    )
    parser.add_argument('dynamics', help='dynamics file written by TDDSRecorder')
    parser.add_argument('-o', '--output', required=True, help='index list to write')
    parser.add_argument(
        '--keep',
        type=count_or_fraction,
        default=0.1,
        help='samples to keep: a count or a fraction in (0, 1) (default: 0.1)',
    )
    parser.add_argument(
        '--epochs',
        type=positive_int,
        help='use the first N recorded epochs (the paper: 30; default: all)',
    )
    parser.add_argument(
        '--window', type=positive_int, default=10, help='sliding window (default: 10)'
    )
    parser.add_argument(
        '--decay',
        type=open_unit_float,
        default=0.9,
        help='window weighting factor (default: 0.9)',
    )
    parser.set_defaults(
        run=run, io_outputs=(('output', 'file'),), io_inputs=('dynamics',)
    )


def run(args: argparse.Namespace) -> int:
    """Score, prune and write.

    Args:
        args: Parsed arguments.

    Returns:
        0.

    Raises:
        InvalidInputError: If the dynamics are too short for the window.
    """
    from ..errors import InvalidInputError
    from ..trainers.tdds import load_dynamics, write_pruned_indices

    probabilities = load_dynamics(args.dynamics)
    try:
        kept = write_pruned_indices(
            args.output,
            probabilities,
            args.keep,
            epochs=args.epochs,
            window=args.window,
            decay=args.decay,
        )
    except ValueError as error:
        raise InvalidInputError(args.dynamics, str(error)) from error
    print(f'kept {len(kept)} of {probabilities.shape[1]} samples -> {args.output}')
    return 0
