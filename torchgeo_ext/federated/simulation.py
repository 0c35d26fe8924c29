"""Run a FedFusion federation as a Flower simulation on Ray (one process, light settings)."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

from .config import FederationConfig


@dataclass
class FederationRun:
    """What a simulated federation returns."""

    #: Flower's result: the averaged shared layers (``arrays``) and per-round metrics.
    result: Any
    #: Every payload: round, stage, kind, direction, client, bytes, raw_bytes, shapes.
    traffic: list[dict[str, Any]]


class DropDeprecationNotice(logging.Filter):
    """Drops Flower's notice that ``run_simulation`` is deprecated (fedfusion.md, Limits)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether to keep a record.

        Args:
            record: A log record of the ``flwr`` logger.

        Returns:
            False for the deprecation notice of ``run_simulation``.
        """
        return 'The `run_simulation` function is deprecated' not in record.getMessage()


def backend_config(config: FederationConfig, verbose: bool = False) -> dict[str, Any]:
    """Ray settings: few CPUs, no dashboard, workers' logs only when verbose.

    Args:
        config: The federation (``num_cpus``, ``cpus_per_client``).
        verbose: Forward Ray's and the clients' logs.

    Returns:
        Flower's ``backend_config``.
    """
    return {
        'client_resources': {'num_cpus': config.cpus_per_client, 'num_gpus': 0.0},
        'init_args': {
            'num_cpus': config.num_cpus,
            'num_gpus': 0,
            'include_dashboard': False,
            'logging_level': 'INFO' if verbose else 'ERROR',
            'log_to_driver': verbose,
        },
    }


def simulate(config: FederationConfig, verbose: bool = False) -> FederationRun:
    """Run the federation: ``config.num_clients`` simulated clients on Ray.

    Args:
        config: The federation.
        verbose: Show Flower's per-round log and Ray's.

    Returns:
        The run.

    Raises:
        RuntimeError: If the server app failed (Flower re-raises its error).
    """
    from flwr.simulation import run_simulation

    from .apps import build_client_app, build_server_app

    outcome: dict[str, Any] = {}
    flower = logging.getLogger('flwr')
    level, notice = flower.level, DropDeprecationNotice()
    flower.setLevel(logging.INFO if verbose else logging.WARNING)
    flower.addFilter(notice)
    try:
        with warnings.catch_warnings():
            # Ray's advice about a future default for GPU visibility; clients use no GPU.
            warnings.filterwarnings(
                'ignore', 'Tip: In future versions of Ray', FutureWarning
            )
            run_simulation(
                server_app=build_server_app(config, outcome),
                client_app=build_client_app(config),
                num_supernodes=config.num_clients,
                backend_config=backend_config(config, verbose),  # type: ignore[arg-type]
            )
    finally:
        flower.setLevel(level)
        flower.removeFilter(notice)
    if 'result' not in outcome:
        raise RuntimeError('the federation ended without a result (see the log above)')
    strategy = outcome['strategy']
    return FederationRun(outcome['result'], strategy.traffic)
