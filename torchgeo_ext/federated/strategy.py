"""FedFusion's Flower strategy: relays partners' low-rank features, averages only the shared layers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from torch import Tensor

from ..models.fedfusion import LowRankFeatures, compress_features
from .config import FederationConfig

#: Message keys.
FEATURES, META, PARTNER, PARTNER_META = 'features', 'meta', 'partner', 'partner-meta'


def config_value[T](content: RecordDict, record: str, key: str, kind: type[T]) -> T:
    """A typed value of one of a message's config records.

    Args:
        content: The message's content.
        record: Name of the config record.
        key: The value's key.
        kind: Its expected type.

    Returns:
        The value.

    Raises:
        TypeError: If it has another type.
    """
    value = content.config_records[record][key]
    if not isinstance(value, kind):
        raise TypeError(f'{record}[{key!r}] is {value!r}, expected a {kind.__name__}')
    return value


def pack_features(features: Tensor, rank: int) -> ArrayRecord:
    """Features as sent: the rank-``rank`` SVD factors, or the raw tensor (``rank`` 0).

    Args:
        features: N x C x h x w.
        rank: Singular values kept; 0 sends ``features`` uncompressed.

    Returns:
        ``u``, ``s``, ``v`` (or ``features``) as float32 arrays.
    """
    if rank == 0:
        return ArrayRecord({'features': features.float().contiguous()})
    low = compress_features(features, rank)
    return ArrayRecord({'u': low.u, 's': low.s, 'v': low.v})


def unpack_features(record: ArrayRecord, shape: list[int]) -> Tensor:
    """The features a partner sent (reconstructed from its factors).

    Args:
        record: From :func:`pack_features`.
        shape: N x C x h x w of the features.

    Returns:
        N x C x h x w.
    """
    tensors = record.to_torch_state_dict()
    if 'features' in tensors:
        return tensors['features'].reshape(shape)
    b, c, h, w = shape
    low = LowRankFeatures(tensors['u'], tensors['s'], tensors['v'], (b, c, h, w))
    return low.reconstruct()


def average_shared(
    records: list[tuple[dict[str, np.ndarray[Any, Any]], float]], shared: set[str]
) -> ArrayRecord:
    """Example-weighted average of the shared layers the clients sent.

    Args:
        records: Each client's layers and its number of examples.
        shared: Names of the shared layers: exactly these are averaged.

    Returns:
        The averaged layers.

    Raises:
        ValueError: If a client sent other layers (a private one) or missed one.
    """
    for layers, _ in records:
        if set(layers) != shared:
            extra, missing = sorted(set(layers) - shared), sorted(shared - set(layers))
            raise ValueError(
                f'a client sent layers that are not the shared ones (private or '
                f'unknown: {extra[:3]}; missing: {missing[:3]})'
            )
    total = sum(weight for _, weight in records)
    averaged = {
        name: sum(layers[name] * (weight / total) for layers, weight in records)
        for name in sorted(shared)
    }
    return ArrayRecord(
        {k: Array(np.asarray(v, dtype=np.float32)) for k, v in averaged.items()}
    )


class FedFusionStrategy(FedAvg):
    """FedAvg over the shared layers, with the feature exchange before each train/evaluate step.

    Before a round's training (and evaluation) the server asks every client for
    its encoder's features of the round's sample (a ``query`` message), pairs
    the HSI and LiDAR clients of each region and forwards each one its partner's
    factors in the ``train`` (``evaluate``) message. :attr:`traffic` records every
    payload: round, stage, kind (``features`` / ``weights``), direction, client,
    bytes sent and, for features, the bytes of the raw features and the arrays' shapes.
    """

    def __init__(self, config: FederationConfig, timeout: float = 3600.0) -> None:
        """Initialise the strategy.

        Args:
            config: The federation.
            timeout: Seconds to wait for the clients' features.
        """
        n = config.num_clients
        super().__init__(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
        self.config = config
        self.timeout = timeout
        self.shared: set[str] = set()
        self.traffic: list[dict[str, Any]] = []

    def exchange(
        self, grid: Grid, server_round: int, stage: str
    ) -> tuple[list[tuple[int, int, RecordDict]], int]:
        """Ask every client for its features and pair them by region.

        Args:
            grid: The grid.
            server_round: The round.
            stage: ``'train'`` or ``'evaluate'`` (test pixels).

        Returns:
            For each node: its id, its partition and its partner's features
            with their meta data; and the seed of the sample.

        Raises:
            RuntimeError: If a client failed, or partners disagree on the pixels.
        """
        split = 'train' if stage == 'train' else 'test'
        seed = (
            self.config.seed
            if split == 'test'
            else self.config.seed * 7919 + server_round
        )
        query = ConfigRecord({'split': split, 'seed': seed})
        messages = [
            Message(
                RecordDict({'config': query}),
                message_type=MessageType.QUERY,
                dst_node_id=node,
            )
            for node in self.nodes(grid)
        ]
        pairs: dict[int, dict[str, Message]] = {}
        for reply in grid.send_and_receive(messages, timeout=self.timeout):
            if reply.has_error():
                raise RuntimeError(
                    f'a client failed to send its features: {reply.error.reason}'
                )
            region = config_value(reply.content, META, 'region', int)
            modality = config_value(reply.content, META, 'modality', str)
            pairs.setdefault(region, {})[modality] = reply
            self.record(server_round, stage, 'features', 'up', reply.content)
        relayed = []
        for region, pair in sorted(pairs.items()):
            digests = {
                config_value(m.content, META, 'digest', str) for m in pair.values()
            }
            if set(pair) != {'hsi', 'lidar'} or len(digests) != 1:
                raise RuntimeError(
                    f'region {region}: expected one HSI and one LiDAR client describing '
                    f'the same pixels, got {sorted(pair)} with {len(digests)} pixel sets'
                )
            for modality, other in (('hsi', 'lidar'), ('lidar', 'hsi')):
                content = pair[other].content
                partition = config_value(pair[modality].content, META, 'partition', int)
                record = RecordDict(
                    {
                        PARTNER: content.array_records[FEATURES],
                        PARTNER_META: content.config_records[META],
                    }
                )
                relayed.append((pair[modality].metadata.src_node_id, partition, record))
                self.record(server_round, stage, 'features', 'down', content, partition)
        return relayed, seed

    def nodes(self, grid: Grid) -> list[int]:
        """All the federation's nodes (waits until they are connected)."""
        from flwr.serverapp.strategy.strategy_utils import sample_nodes

        n = self.config.num_clients
        nodes, _ = sample_nodes(grid, n, n)
        return nodes

    def record(
        self,
        server_round: int,
        stage: str,
        kind: str,
        direction: str,
        content: RecordDict,
        partition: int | None = None,
    ) -> None:
        """Add a payload to :attr:`traffic`."""
        if kind == 'features':
            arrays = content.array_records[FEATURES]
            nbytes = arrays.count_bytes()
            shapes = {k: list(a.shape) for k, a in arrays.items()}
            raw = 4 * math.prod(config_value(content, META, 'shape', list))
            if partition is None:
                partition = config_value(content, META, 'partition', int)
        else:
            nbytes, raw, shapes = content.array_records['arrays'].count_bytes(), 0, {}
        self.traffic.append(
            {
                'round': server_round,
                'stage': stage,
                'kind': kind,
                'direction': direction,
                'client': -1 if partition is None else partition,
                'bytes': nbytes,
                'raw_bytes': raw,
                'shapes': shapes,
            }
        )

    def messages(
        self,
        server_round: int,
        arrays: ArrayRecord,
        config: ConfigRecord,
        grid: Grid,
        stage: str,
    ) -> list[Message]:
        """The train or evaluate messages: shared layers, the partner's features, the seed."""
        relayed, seed = self.exchange(grid, server_round, stage)
        settings = ConfigRecord(
            {
                **dict(config),
                'server-round': server_round,
                'seed': seed,
                'final': server_round == self.config.rounds,
            }
        )
        out = []
        for node, partition, partner in relayed:
            content = RecordDict(
                {'arrays': arrays, 'config': settings, **dict(partner)}
            )
            self.record(server_round, stage, 'weights', 'down', content, partition)
            message_type = (
                MessageType.TRAIN if stage == 'train' else MessageType.EVALUATE
            )
            out.append(Message(content, message_type=message_type, dst_node_id=node))
        return out

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Exchange the training features, then send the shared layers with them."""
        if not self.shared:
            self.shared = set(arrays.keys())
        return self.messages(server_round, arrays, config, grid, 'train')

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Exchange the test features, then send the shared layers with them."""
        return self.messages(server_round, arrays, config, grid, 'evaluate')

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the shared layers the clients trained (no private layer is accepted).

        Raises:
            RuntimeError: If a client failed (its partner's step is then meaningless).
        """
        replies = list(replies)
        for reply in replies:
            if reply.has_error():
                raise RuntimeError(f'a client failed to train: {reply.error.reason}')
            partition = config_value(reply.content, 'client', 'partition', int)
            self.record(
                server_round, 'train', 'weights', 'up', reply.content, partition
            )
        records = [
            (
                {
                    k: a.numpy()
                    for k, a in reply.content.array_records['arrays'].items()
                },
                float(reply.content.metric_records['metrics']['num-examples']),  # type: ignore[arg-type]
            )
            for reply in replies
        ]
        arrays = average_shared(records, self.shared)
        metrics = self.train_metrics_aggr_fn(
            [reply.content for reply in replies], self.weighted_by_key
        )
        return arrays, metrics
