"""FedFusion's Flower ClientApp and ServerApp, built from a federation config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

from ..export.atomic import atomic_output
from ..export.checkpoint_io import save_checkpoint_atomically
from .client import LocalClient, build_model
from .config import FederationConfig
from .data import client_role
from .strategy import (
    FEATURES,
    META,
    PARTNER,
    PARTNER_META,
    FedFusionStrategy,
    config_value,
    pack_features,
    unpack_features,
)


def local_client(config: FederationConfig, context: Context) -> LocalClient:
    """The node's client, with its model as the previous message left it.

    Args:
        config: The federation.
        context: The node's Flower context (``partition-id``, ``num-partitions``).

    Returns:
        The client.
    """
    torch.set_num_threads(max(1, int(config.cpus_per_client)))
    role = client_role(
        int(context.node_config['partition-id']),
        int(context.node_config['num-partitions']),
        config,
    )
    state = None
    if 'model' in context.state.array_records:
        state = context.state.array_records['model'].to_torch_state_dict()
    return LocalClient(config, role, state)


def keep(client: LocalClient, context: Context) -> None:
    """Store the client's whole model (private encoder included) in the node's state."""
    context.state['model'] = ArrayRecord(client.model.state_dict())


def reply(client: LocalClient, message: Message, **records: Any) -> Message:
    """A reply carrying ``records`` and the client's partition."""
    who = ConfigRecord({'partition': client.role.partition})
    return Message(RecordDict({**records, 'client': who}), reply_to=message)


def build_client_app(config: FederationConfig) -> ClientApp:
    """The ClientApp: ``query`` sends features, ``train`` and ``evaluate`` use the partner's.

    Args:
        config: The federation.

    Returns:
        The app.
    """
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        client = local_client(config, context)
        split = config_value(message.content, 'config', 'split', str)
        seed = config_value(message.content, 'config', 'seed', int)
        features, digest = client.features(split, seed)
        keep(client, context)
        meta = ConfigRecord(
            {
                'partition': client.role.partition,
                'modality': client.role.modality,
                'region': client.role.region,
                'digest': digest,
                'shape': list(features.shape),
            }
        )
        return reply(
            client,
            message,
            **{FEATURES: pack_features(features, config.rank), META: meta},
        )

    def partner_features(message: Message) -> torch.Tensor:
        shape = config_value(message.content, PARTNER_META, 'shape', list)
        return unpack_features(message.content.array_records[PARTNER], shape)

    @app.train()
    def train(message: Message, context: Context) -> Message:
        client = local_client(config, context)
        client.load_shared(
            message.content.array_records['arrays'].to_torch_state_dict()
        )
        seed = config_value(message.content, 'config', 'seed', int)
        server_round = config_value(message.content, 'config', 'server-round', int)
        metrics = client.train(partner_features(message), seed, server_round)
        keep(client, context)
        return reply(
            client,
            message,
            arrays=ArrayRecord(client.shared_state()),
            metrics=MetricRecord(dict(metrics)),
        )

    @app.evaluate()
    def evaluate(message: Message, context: Context) -> Message:
        client = local_client(config, context)
        client.load_shared(
            message.content.array_records['arrays'].to_torch_state_dict()
        )
        seed = config_value(message.content, 'config', 'seed', int)
        metrics = client.evaluate(partner_features(message), seed)
        keep(client, context)
        if config.output and config_value(message.content, 'config', 'final', bool):
            path = Path(config.output) / f'client_{client.role.partition}.pt'
            save_checkpoint_atomically(client_checkpoint(client), path)
        return reply(client, message, metrics=MetricRecord(dict(metrics)))

    return app


def client_checkpoint(client: LocalClient) -> dict[str, Any]:
    """What a client saves at the end: its whole model and who it is."""
    return {
        'state_dict': client.model.state_dict(),
        'role': vars(client.role),
        'config': client.config.to_dict(),
    }


def initial_shared(config: FederationConfig) -> ArrayRecord:
    """The shared layers every client starts from (they do not depend on the bands)."""
    model = build_model(config, hsi_bands=1, lidar_bands=1)
    return ArrayRecord(
        {k: v for k, v in model.state_dict().items() if model.is_shared(k)}
    )


def build_server_app(config: FederationConfig, outcome: dict[str, Any]) -> ServerApp:
    """The ServerApp: :class:`FedFusionStrategy` for ``config.rounds`` rounds.

    Args:
        config: The federation.
        outcome: Filled with ``result`` (Flower's :class:`Result`) and
            ``strategy`` (its :attr:`~FedFusionStrategy.traffic`) when the run ends.

    Returns:
        The app.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedFusionStrategy(config)
        result = strategy.start(
            grid=grid, initial_arrays=initial_shared(config), num_rounds=config.rounds
        )
        outcome.update(result=result, strategy=strategy)
        if config.output:
            write_outputs(config, result, strategy)

    return app


def history(result: Result, strategy: FedFusionStrategy) -> dict[str, Any]:
    """Per-round metrics and traffic of a run, as plain values."""
    evaluate = result.evaluate_metrics_clientapp
    train = result.train_metrics_clientapp
    return {
        'config': strategy.config.to_dict(),
        'train': {str(r): dict(m) for r, m in train.items()},
        'evaluate': {str(r): dict(m) for r, m in evaluate.items()},
        'traffic': strategy.traffic,
    }


def write_outputs(
    config: FederationConfig, result: Result, strategy: FedFusionStrategy
) -> None:
    """Write ``history.json`` and ``shared.pt`` (the averaged layers) into ``config.output``."""
    folder = Path(str(config.output))
    with atomic_output(folder / 'history.json') as tmp:
        tmp.write_text(json.dumps(history(result, strategy), indent=1))
    shared = {
        'state_dict': result.arrays.to_torch_state_dict(),
        'config': config.to_dict(),
    }
    save_checkpoint_atomically(shared, folder / 'shared.pt')
