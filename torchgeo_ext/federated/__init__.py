"""Federated training on Flower (FedFusion): needs the ``federated`` extra (``flwr[simulation]``).

``import torchgeo_ext`` never imports this package; its Flower modules import ``flwr``.
"""

from __future__ import annotations

import os

# Flower sends usage telemetry over the network unless told otherwise; federations often run
# offline (clusters, satellites' ground stations), so it is off unless the user sets it.
os.environ.setdefault('FLWR_TELEMETRY_ENABLED', '0')
