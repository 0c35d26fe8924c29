"""A FedFusion client's local work, free of Flower: features to exchange, local training, evaluation."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError
from ..losses.fedfusion import fedfusion_loss
from ..models.api import get_model
from ..models.fedfusion import FedFusion
from .config import FederationConfig
from .data import ClientData, ClientRole, dataset_class, load_dataset


def build_model(
    config: FederationConfig, hsi_bands: int, lidar_bands: int
) -> FedFusion:
    """The config's model, seeded (every client and the server start alike).

    Args:
        config: The federation.
        hsi_bands: HSI bands of the scene.
        lidar_bands: LiDAR bands of the scene.

    Returns:
        The model.
    """
    num_classes = len(dataset_class(config).classes)
    with torch.random.fork_rng(
        devices=[]
    ):  # seeded; the caller's generator is untouched
        torch.manual_seed(config.seed)
        model: FedFusion = get_model(
            config.model,
            hsi_bands=hsi_bands,
            lidar_bands=lidar_bands,
            num_classes=num_classes,
            **config.model_kwargs,
        )
    return model


class LocalClient:
    """One client: its data, its model (private encoder + shared layers) and its steps."""

    def __init__(
        self,
        config: FederationConfig,
        role: ClientRole,
        state: dict[str, Tensor] | None = None,
    ) -> None:
        """Read the client's data and build (or restore) its model.

        Args:
            config: The federation.
            role: Which modality and region the client holds.
            state: The model's state from the client's previous round.
        """
        self.config = config
        self.role = role
        self.data = {
            split: ClientData(load_dataset(config, split), role, config.regions)
            for split in ('train', 'test')
        }
        modalities = self.data['train'].dataset.modalities
        self.model = build_model(
            config, len(modalities['hsi']), len(modalities['lidar'])
        )
        if state is not None:
            self.model.load_state_dict(state)

    def features(self, split: str, seed: int) -> tuple[Tensor, str]:
        """The private encoder's features of a seeded sample of pixels.

        Training features are computed with batch statistics, as during local
        training; test features with the running statistics.

        Args:
            split: ``'train'`` or ``'test'``.
            seed: Seed of the sample (partners use the same).

        Returns:
            N x C x h x w features and the fingerprint of the pixels.
        """
        data = self.data[split]
        positions = self.positions(split, seed)
        self.model.train(split == 'train')
        with torch.no_grad():
            features = torch.cat(
                [
                    self.model.encode(self.role.modality, data.patches(batch))
                    for batch in np.array_split(positions, self.batches(len(positions)))
                ]
            )
        return features, data.digest(positions)

    def positions(self, split: str, seed: int) -> NDArray[np.int64]:
        """The sample of a split for a round.

        Args:
            split: ``'train'`` or ``'test'``.
            seed: Seed of the sample.

        Returns:
            Positions into the region's pixels.
        """
        size = self.config.sample_size if split == 'train' else self.config.eval_size
        return self.data[split].sample(size, seed)

    def batches(self, n: int) -> int:
        """Number of mini-batches of at most ``batch_size`` for ``n`` samples."""
        return max(1, -(-n // self.config.batch_size))

    def shared_state(self) -> dict[str, Tensor]:
        """The layers the server averages."""
        return {
            k: v for k, v in self.model.state_dict().items() if self.model.is_shared(k)
        }

    def load_shared(self, shared: dict[str, Tensor]) -> None:
        """Replace the shared layers by the server's average.

        Args:
            shared: The averaged shared layers.

        Raises:
            InvalidInputError: If the server's layers are not the model's shared ones.
        """
        expected = set(self.shared_state())
        if set(shared) != expected:
            raise InvalidInputError(
                self.config.source,
                f'the server sent layers {sorted(set(shared) ^ expected)[:5]} that do not '
                f'match the shared layers of {self.config.model}',
            )
        self.model.load_state_dict(shared, strict=False)

    def fuse(self, own: Tensor, partner: Tensor) -> dict[str, Tensor]:
        """Cross-fuse own and partner features in the model's modality order."""
        if self.role.modality == 'hsi':
            return self.model.fuse(own, partner)
        return self.model.fuse(partner, own)

    def train(
        self, partner: Tensor, seed: int, server_round: int = 1
    ) -> dict[str, float]:
        """Train the private encoder and the shared layers on the round's sample.

        A fresh Adam runs for ``local_epochs`` over the sample (optimiser
        state is not kept across rounds), at the round's learning rate.

        Args:
            partner: The partner's (reconstructed) features of the sample.
            seed: The round's seed (the sample and the batch order).
            server_round: The round (for the learning-rate decay).

        Returns:
            ``train-loss`` (mean over the last epoch) and ``num-examples``.
        """
        data = self.data['train']
        positions = self.positions('train', seed)
        patches, labels = data.patches(positions), data.labels(positions)
        params = [
            p
            for name, p in self.model.named_parameters()
            if self.model.is_shared(name)
            or name.startswith(f'encoders.{self.role.modality}.')
        ]
        optimiser = torch.optim.Adam(
            params,
            lr=self.config.learning_rate(server_round),
            weight_decay=self.config.weight_decay,
        )
        generator = torch.Generator().manual_seed(seed)
        self.model.train()
        losses: list[float] = []
        for _ in range(self.config.local_epochs):
            losses = []
            order = torch.randperm(len(positions), generator=generator)
            for batch in order.split(self.config.batch_size):
                own = self.model.encode(self.role.modality, patches[batch])
                out = self.fuse(own, partner[batch])
                loss = fedfusion_loss(
                    out, labels[batch], self.config.consistency_weight
                )['loss']
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                losses.append(loss.item())
        return {'train-loss': float(np.mean(losses)), 'num-examples': len(positions)}

    def evaluate(self, partner: Tensor, seed: int) -> dict[str, float]:
        """Overall and average accuracy of the fused prediction on the test sample.

        Args:
            partner: The partner's (reconstructed) features of the sample.
            seed: Seed of the test sample.

        Returns:
            ``accuracy`` (overall), ``average-accuracy`` (mean per-class
            recall over the classes present) and ``num-examples``.
        """
        data = self.data['test']
        positions = self.positions('test', seed)
        self.model.eval()
        predictions = []
        with torch.no_grad():
            for batch in np.array_split(
                np.arange(len(positions)), self.batches(len(positions))
            ):
                own = self.model.encode(
                    self.role.modality, data.patches(positions[batch])
                )
                predictions.append(self.fuse(own, partner[batch])['logits'].argmax(1))
        predicted = torch.cat(predictions)
        labels = data.labels(positions)
        correct = predicted == labels
        recalls = [correct[labels == c].float().mean() for c in labels.unique()]
        return {
            'accuracy': float(correct.float().mean()),
            'average-accuracy': float(torch.stack(recalls).mean()),
            'num-examples': len(positions),
        }
