"""``torchgeo-ext federated``: train FedFusion as a Flower simulation (the ``federated`` extra)."""

from __future__ import annotations

import argparse
from typing import Any

from ._options import positive_int


def add_parser(subparsers: Any) -> None:
    """Register the ``federated`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = subparsers.add_parser(
        'federated',
        help='FedFusion federated training as a Flower simulation (Ray)',
        description='Simulate a FedFusion federation: one client per modality and '
        'region of an HSI + LiDAR scene, exchanging rank-r SVD features, the server '
        'averaging only the shared layers. Needs: pip install torchgeo-ext[federated].',
    )
    parser.add_argument('--config', required=True, help='federation config (YAML)')
    parser.add_argument('-o', '--output', help='output folder (overrides the config)')
    parser.add_argument(
        '--rounds', type=positive_int, help='rounds (overrides the config)'
    )
    parser.add_argument(
        '--verbose', action='store_true', help="show Flower's and Ray's logs"
    )
    parser.set_defaults(
        run=run, io_outputs=(('output', 'directory'),), io_inputs=('config',)
    )


def run(args: argparse.Namespace) -> int:
    """Read the config, run the simulation and print each round's accuracy.

    Args:
        args: Parsed arguments.

    Returns:
        0.

    Raises:
        MissingInputError: If Flower is not installed.
    """
    from ..errors import MissingInputError

    try:
        from ..federated.config import read_config
        from ..federated.simulation import simulate
    except ImportError as err:  # pragma: no cover - the extra is missing
        raise MissingInputError(
            None, f'{err.name} is missing: pip install "torchgeo-ext[federated]"'
        ) from err
    config = read_config(args.config, output=args.output, rounds=args.rounds)
    outcome = simulate(config, verbose=args.verbose)
    for server_round, metrics in sorted(
        outcome.result.evaluate_metrics_clientapp.items()
    ):
        print(
            f'round {server_round}: OA {metrics["accuracy"]:.4f}  '
            f'AA {metrics["average-accuracy"]:.4f}'
        )
    if config.output:
        print(f'wrote {config.output}')
    return 0
