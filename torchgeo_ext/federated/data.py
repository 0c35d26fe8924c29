"""What one FedFusion client holds: one modality of one region of an HSI + LiDAR scene."""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError
from ..models.fedfusion import MODALITIES
from .config import DATASETS, FederationConfig

if TYPE_CHECKING:
    from ..datasets.hsi_lidar import HSILiDARDataset


@dataclass(frozen=True)
class ClientRole:
    """Who a client is: its partition, modality and region."""

    partition: int
    modality: str
    region: int


def client_role(
    partition: int, num_partitions: int, config: FederationConfig
) -> ClientRole:
    """The role of a partition: even ones hold HSI, odd ones LiDAR, two per region.

    Args:
        partition: The node's ``partition-id``.
        num_partitions: The node's ``num-partitions``.
        config: The federation.

    Returns:
        The role.

    Raises:
        InvalidInputError: If the partitions do not match the config's clients.
    """
    if num_partitions != config.num_clients or not 0 <= partition < num_partitions:
        raise InvalidInputError(
            config.source,
            f'partition {partition} of {num_partitions}: the federation has '
            f'{config.num_clients} clients (2 per region, {config.regions} regions)',
        )
    return ClientRole(partition, MODALITIES[partition % 2], partition // 2)


def dataset_class(config: FederationConfig) -> type[HSILiDARDataset]:
    """The config's dataset class (no file is read).

    Args:
        config: The federation.

    Returns:
        The class.
    """
    module, name = DATASETS[config.dataset].split(':')
    cls: type[HSILiDARDataset] = getattr(importlib.import_module(module), name)
    return cls


@lru_cache(maxsize=4)
def _load(config_json: str, split: str) -> HSILiDARDataset:
    config = FederationConfig(**json.loads(config_json))
    return dataset_class(config)(
        split=split, patch_size=config.patch_size, **config.dataset_kwargs
    )


def load_dataset(config: FederationConfig, split: str) -> HSILiDARDataset:
    """The config's scene (read once per process and split).

    Args:
        config: The federation.
        split: ``'train'`` or ``'test'``.

    Returns:
        The dataset.
    """
    reading = {
        'dataset': config.dataset,
        'dataset_kwargs': config.dataset_kwargs,
        'patch_size': config.patch_size,
    }
    return _load(json.dumps(reading, sort_keys=True), split)


class ClientData:
    """The patches of one modality over one region's labelled pixels of a split."""

    def __init__(
        self, dataset: HSILiDARDataset, role: ClientRole, regions: int
    ) -> None:
        """Select the region's pixels and the modality's bands.

        Args:
            dataset: The scene's split.
            role: The client.
            regions: Vertical strips the scene is cut into.

        Raises:
            InvalidInputError: If the region has no labelled pixel.
        """
        self.dataset = dataset
        self.role = role
        self.bands = dataset.modalities[role.modality]
        width = dataset.image.shape[-1]
        strip = dataset.cols * regions // width
        self.indices: NDArray[np.int64] = np.flatnonzero(strip == role.region)
        if len(self.indices) == 0:
            raise InvalidInputError(
                dataset.root,
                f'region {role.region} of {regions} has no {dataset.split} pixels',
            )

    def __len__(self) -> int:
        """Labelled pixels of the region."""
        return len(self.indices)

    def sample(self, size: int, seed: int) -> NDArray[np.int64]:
        """Positions (into the region's pixels) of a seeded sample, in order.

        Partners draw with the same seed, so they describe the same pixels.

        Args:
            size: Pixels wanted; 0 or more than the region has: all.
            seed: Seed of the draw.

        Returns:
            Sorted positions.
        """
        if size == 0 or size >= len(self):
            return np.arange(len(self))
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(len(self), size=size, replace=False))

    def digest(self, positions: NDArray[np.int64]) -> str:
        """A fingerprint of the pixels (rows, columns) at some positions.

        Args:
            positions: From :meth:`sample`.

        Returns:
            Hex digest; partners' must agree.
        """
        index = self.indices[positions]
        pixels = np.stack([self.dataset.rows[index], self.dataset.cols[index]])
        return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()

    def patches(self, positions: NDArray[np.int64]) -> Tensor:
        """The modality's patches at some positions.

        Args:
            positions: From :meth:`sample`.

        Returns:
            float32 N x bands x P x P.
        """
        d = self.dataset
        bands = self.bands
        return torch.stack(
            [
                d.patch(int(d.rows[i]), int(d.cols[i]))[bands]
                for i in self.indices[positions]
            ]
        )

    def labels(self, positions: NDArray[np.int64]) -> Tensor:
        """Labels at some positions.

        Args:
            positions: From :meth:`sample`.

        Returns:
            int64 N.
        """
        return torch.from_numpy(self.dataset.labels[self.indices[positions]])
