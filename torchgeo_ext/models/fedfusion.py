"""FedFusion: per-modality CNN encoders, low-rank feature exchange, cross-fusion, a shared head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

#: The modalities of an HSI + LiDAR scene, in the order of the bands of a patch.
MODALITIES = ('hsi', 'lidar')


def conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """A convolution (same padding), batch norm and ReLU.

    Args:
        cin: Input channels.
        cout: Output channels.
        kernel: Kernel side (odd).

    Returns:
        The block.
    """
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ModalityEncoder(nn.Module):
    """One modality's small CNN: 3 x 3, 1 x 1, max-pool, 3 x 3 (a 7 x 7 patch -> 4 x 4)."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        """Initialise the encoder.

        Args:
            in_channels: Bands of the modality.
            width: Channels of the first layer (then 2x and 4x).
        """
        super().__init__()
        self.layers = nn.Sequential(
            conv_bn_relu(in_channels, width, 3),
            conv_bn_relu(width, 2 * width, 1),
            nn.MaxPool2d(2, stride=2, padding=1),
            conv_bn_relu(2 * width, 4 * width, 3),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Encode patches.

        Args:
            x: B x C x P x P patches.

        Returns:
            B x 4 width x (P // 2 + 1) x (P // 2 + 1) features.
        """
        out: Tensor = self.layers(x)
        return out


class CrossFusion(nn.Module):
    """One 1 x 1 projection (with BN, ReLU and max-pool) applied to both modalities."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        """Initialise the projection.

        Args:
            in_channels: Channels of the encoder features.
            out_channels: Channels of the projection.
        """
        super().__init__()
        self.project = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, 1),
            nn.MaxPool2d(2, stride=2, padding=1),
        )

    def forward(self, hsi: Tensor, lidar: Tensor) -> tuple[Tensor, Tensor]:
        """Project both modalities' features into one space.

        Args:
            hsi: B x C x h x w HSI features.
            lidar: B x C x h x w LiDAR features.

        Returns:
            The two projections.
        """
        return self.project(hsi), self.project(lidar)


@dataclass(frozen=True)
class LowRankFeatures:
    """A feature batch as a truncated SVD: the B*C x h*w matrix ~= ``u diag(s) v^T``."""

    u: Tensor
    s: Tensor
    v: Tensor
    shape: tuple[int, int, int, int]

    @property
    def rank(self) -> int:
        """Rank kept."""
        return int(self.s.numel())

    @property
    def nbytes(self) -> int:
        """Bytes of the three factors (what is exchanged)."""
        return sum(t.numel() * t.element_size() for t in (self.u, self.s, self.v))

    def reconstruct(self) -> Tensor:
        """The rank-``r`` approximation of the features.

        Returns:
            B x C x h x w.
        """
        return ((self.u * self.s) @ self.v.T).reshape(self.shape)


def compress_features(features: Tensor, rank: int = 4) -> LowRankFeatures:
    """Truncated SVD of a feature batch, seen as a (B*C) x (h*w) matrix.

    Each row (one channel of one pixel's feature map) is written in the ``rank``
    spatial patterns that carry most of the batch's energy: the shallow features'
    prominent manifold of the paper. A 4 x 4 map at rank 4 is about 4x fewer numbers.

    Args:
        features: B x C x h x w.
        rank: Singular values kept (at most ``min(B*C, h*w)``).

    Returns:
        The factors (``u``: B*C x r, ``s``: r, ``v``: h*w x r), detached.

    Raises:
        ValueError: If ``rank`` is not positive or ``features`` is not 4-D.
    """
    if rank < 1:
        raise ValueError(f'rank must be positive, got {rank}')
    if features.ndim != 4:
        raise ValueError(f'features must be B x C x h x w, got {tuple(features.shape)}')
    b, c, h, w = features.shape
    matrix = features.detach().reshape(b * c, h * w).float()
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    r = min(rank, s.numel())
    return LowRankFeatures(
        u[:, :r].contiguous(), s[:r].contiguous(), vh[:r].T.contiguous(), (b, c, h, w)
    )


class FedFusion(nn.Module):
    """Two private modality encoders, cross-fusion and a classifier head.

    In federated training each client trains one encoder (its sensor's) and
    the shared layers (:attr:`shared_prefixes`), which the server averages; the
    other modality's features arrive compressed (:func:`compress_features`).
    """

    #: Parameter-name prefixes of the layers averaged across clients.
    shared_prefixes = ('cross_a.', 'cross_b.', 'head.')

    def __init__(
        self,
        hsi_bands: int,
        lidar_bands: int,
        num_classes: int,
        width: int = 16,
        exchange_rank: int | None = None,
    ) -> None:
        """Initialise the model.

        Args:
            hsi_bands: HSI bands (first in a stacked patch).
            lidar_bands: LiDAR bands (after the HSI bands).
            num_classes: Number of classes.
            width: Channels of the encoders' first layer.
            exchange_rank: When set, :meth:`forward` passes the LiDAR features
                through a rank-``exchange_rank`` SVD, as a client receives them.
        """
        super().__init__()
        self.bands = {'hsi': hsi_bands, 'lidar': lidar_bands}
        self.exchange_rank = exchange_rank
        self.encoders = nn.ModuleDict(
            {m: ModalityEncoder(n, width) for m, n in self.bands.items()}
        )
        self.cross_a = CrossFusion(4 * width, 8 * width)
        self.cross_b = CrossFusion(4 * width, 8 * width)
        self.head = nn.Sequential(
            conv_bn_relu(16 * width, 8 * width, 1),
            conv_bn_relu(8 * width, 4 * width, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def split(self, x: Tensor) -> dict[str, Tensor]:
        """Split stacked patches into the modalities.

        Args:
            x: B x (hsi + lidar) x P x P.

        Returns:
            ``hsi`` and ``lidar`` patches.
        """
        h = self.bands['hsi']
        return {'hsi': x[:, :h], 'lidar': x[:, h : h + self.bands['lidar']]}

    def encode(self, modality: str, x: Tensor) -> Tensor:
        """Features of one modality.

        Args:
            modality: ``'hsi'`` or ``'lidar'``.
            x: B x bands x P x P patches of that modality.

        Returns:
            B x 4 width x h x w.
        """
        out: Tensor = self.encoders[modality](x)
        return out

    def fuse(self, hsi: Tensor, lidar: Tensor) -> dict[str, Tensor]:
        """Cross-fuse two feature maps and classify three joint encodings.

        Args:
            hsi: HSI features.
            lidar: LiDAR features (of the same pixels).

        Returns:
            ``logits`` of the fused encoding (additive, then cascaded), and
            ``hsi_logits`` / ``lidar_logits`` of each modality's two projections.
        """
        a_hsi, a_lidar = self.cross_a(hsi, lidar)
        b_hsi, b_lidar = self.cross_b(hsi, lidar)
        joint = {
            'logits': torch.cat([a_hsi + a_lidar, b_hsi + b_lidar], 1),
            'hsi_logits': torch.cat([a_hsi, b_hsi], 1),
            'lidar_logits': torch.cat([a_lidar, b_lidar], 1),
        }
        return {key: self.head(value) for key, value in joint.items()}

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Classify the centre pixels of stacked patches.

        Args:
            x: B x (hsi + lidar) x P x P patches (P = 7 in the paper).

        Returns:
            As :meth:`fuse`.
        """
        parts = self.split(x)
        hsi = self.encode('hsi', parts['hsi'])
        lidar = self.encode('lidar', parts['lidar'])
        if self.exchange_rank is not None:
            lidar = compress_features(lidar, self.exchange_rank).reconstruct()
        return self.fuse(hsi, lidar)

    def is_shared(self, name: str) -> bool:
        """Whether a state-dict entry is averaged across clients.

        Args:
            name: A key of :meth:`state_dict`.

        Returns:
            True for the cross-fusion and head layers (BN counters excluded).
        """
        return name.startswith(self.shared_prefixes) and not name.endswith(
            'num_batches_tracked'
        )


def fedfusion(
    hsi_bands: int = 144, lidar_bands: int = 1, num_classes: int = 15, **kwargs: Any
) -> FedFusion:
    """FedFusion as in the paper (width 16: 16/32/64 encoder channels, 128 after fusion).

    Args:
        hsi_bands: HSI bands.
        lidar_bands: LiDAR bands.
        num_classes: Number of classes.
        **kwargs: Other :class:`FedFusion` arguments.

    Returns:
        The model.
    """
    return FedFusion(hsi_bands, lidar_bands, num_classes, **kwargs)


def fedfusion_tiny(
    hsi_bands: int = 144, lidar_bands: int = 1, num_classes: int = 15, **kwargs: Any
) -> FedFusion:
    """A tiny FedFusion for tests and CPU runs (width 4).

    Args:
        hsi_bands: HSI bands.
        lidar_bands: LiDAR bands.
        num_classes: Number of classes.
        **kwargs: Other :class:`FedFusion` arguments.

    Returns:
        The model.
    """
    kwargs.setdefault('width', 4)
    return FedFusion(hsi_bands, lidar_bands, num_classes, **kwargs)
