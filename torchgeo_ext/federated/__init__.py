"""Federated training on Flower (FedFusion): needs the ``federated`` extra (``flwr[simulation]``).

Names load lazily; ``import torchgeo_ext`` never imports this package, nor ``flwr``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..lazy import lazy_exports

# Flower sends usage telemetry over the network unless told otherwise; federations often run
# offline (clusters, satellites' ground stations), so it is off unless the user sets it.
os.environ.setdefault('FLWR_TELEMETRY_ENABLED', '0')

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .apps import build_client_app, build_server_app
    from .client import LocalClient
    from .config import FederationConfig, read_config
    from .data import ClientData, ClientRole
    from .simulation import FederationRun, simulate
    from .strategy import (
        FedFusionStrategy,
        average_shared,
        pack_features,
        unpack_features,
    )

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'build_client_app': 'torchgeo_ext.federated.apps',
    'build_server_app': 'torchgeo_ext.federated.apps',
    'LocalClient': 'torchgeo_ext.federated.client',
    'FederationConfig': 'torchgeo_ext.federated.config',
    'read_config': 'torchgeo_ext.federated.config',
    'ClientData': 'torchgeo_ext.federated.data',
    'ClientRole': 'torchgeo_ext.federated.data',
    'FederationRun': 'torchgeo_ext.federated.simulation',
    'simulate': 'torchgeo_ext.federated.simulation',
    'FedFusionStrategy': 'torchgeo_ext.federated.strategy',
    'average_shared': 'torchgeo_ext.federated.strategy',
    'pack_features': 'torchgeo_ext.federated.strategy',
    'unpack_features': 'torchgeo_ext.federated.strategy',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
