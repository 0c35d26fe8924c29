"""MIViT: multimodal informative ViT for HSI + LiDAR land-cover classification."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def centre_crop(x: Tensor, size: int) -> Tensor:
    """The ``size`` x ``size`` window of a patch around its centre pixel.

    The centre pixel of a side-``P`` patch is at index ``P // 2``; the window
    keeps it at index ``size // 2`` (MIViT's even-sized windows).

    Args:
        x: B x C x P x P patches.
        size: Window side (at most ``P``).

    Returns:
        B x C x size x size.

    Raises:
        ValueError: If the patch is smaller than the window.
    """
    p = x.shape[-1]
    if size > p:
        raise ValueError(f'patch of {p} pixels is smaller than the {size}-pixel window')
    start = p // 2 - size // 2
    return x[..., start : start + size, start : start + size]


class ConvStem(nn.Module):
    """Two 3x3 conv-BN-ReLU layers, then adaptive average pooling to a grid."""

    def __init__(self, in_channels: int, dim: int, grid: int) -> None:
        """Initialise a new ConvStem.

        Args:
            in_channels: Input bands.
            dim: Output channels.
            grid: Side of the pooled output.
        """
        super().__init__()
        hidden = max(dim, min(in_channels, 2 * dim))
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, dim, 3, padding=1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(grid),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Encode a crop.

        Args:
            x: B x C x s x s.

        Returns:
            B x dim x grid x grid.
        """
        out: Tensor = self.layers(x)
        return out


class MultiScaleEncoder(nn.Module):
    """One modality's encoders of the 8/16/24 crops, summed on an 8 x 8 grid."""

    def __init__(
        self, in_channels: int, dim: int, scales: Sequence[int], grid: int
    ) -> None:
        """Initialise a new MultiScaleEncoder.

        Args:
            in_channels: Bands of the modality.
            dim: Feature channels.
            scales: Crop sides.
            grid: Side of the pooled maps.
        """
        super().__init__()
        self.scales = tuple(scales)
        self.stems = nn.ModuleList(ConvStem(in_channels, dim, grid) for _ in scales)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a modality's patches.

        Args:
            x: B x C x P x P patches (``P >= max(scales)``).

        Returns:
            B x dim x grid x grid.
        """
        maps = [
            stem(centre_crop(x, s))
            for s, stem in zip(self.scales, self.stems, strict=True)
        ]
        return torch.stack(maps).sum(0)


class OrientedAttentionFusion(nn.Module):
    """OAF: gated horizontal and vertical cross-modal refinement of two maps."""

    def __init__(self, dim: int, kernel: int = 3) -> None:
        """Initialise a new OrientedAttentionFusion.

        Args:
            dim: Channels of both maps.
            kernel: Length ``k`` of the ``k x 1`` and ``1 x k`` convolutions.
        """
        super().__init__()

        def conv(shape: tuple[int, int]) -> nn.Conv2d:
            pad = (shape[0] // 2, shape[1] // 2)
            return nn.Conv2d(dim, dim, shape, padding=pad)

        vertical, horizontal = (kernel, 1), (1, kernel)
        # Value and gate convolutions per modality and orientation.
        self.value_v = nn.ModuleList(conv(vertical) for _ in range(2))
        self.value_h = nn.ModuleList(conv(horizontal) for _ in range(2))
        self.gate_v = nn.ModuleList(conv(vertical) for _ in range(2))
        self.gate_h = nn.ModuleList(conv(horizontal) for _ in range(2))
        self.norm = nn.ModuleList(nn.BatchNorm2d(dim) for _ in range(2))

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fuse two maps.

        Args:
            a: B x dim x H x W map of modality 1.
            b: B x dim x H x W map of modality 2.

        Returns:
            The refined maps of both modalities and their sum (the fused map).
        """
        maps = (a, b)
        refined = []
        for i in range(2):
            own, other = maps[i], maps[1 - i]
            vertical = self.value_v[i](own) * torch.sigmoid(self.gate_v[i](other))
            horizontal = self.value_h[i](own) * torch.sigmoid(self.gate_h[i](other))
            refined.append(F.relu(self.norm[i](own + vertical + horizontal)))
        return refined[0], refined[1], refined[0] + refined[1]


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (multi-head attention and a GELU MLP)."""

    def __init__(
        self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float
    ) -> None:
        """Initialise a new TransformerBlock.

        Args:
            dim: Token dimension.
            heads: Attention heads.
            dim_head: Dimension per head.
            mlp_dim: Hidden size of the MLP.
            dropout: Dropout rate.
        """
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
        )
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        """Run the block.

        Args:
            x: B x N x dim.

        Returns:
            B x N x dim.
        """
        b, n, _ = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(b, n, 3, self.heads, -1)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        p = self.dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, n, -1)))
        return x + self.drop(self.mlp(self.norm2(x)))


class MIViT(nn.Module):
    """MIViT patch classifier (HSI + LiDAR).

    Inputs stack the HSI bands first and the LiDAR bands after them (the
    datasets' ``modalities``); the centre pixel of the patch is classified.
    """

    def __init__(
        self,
        hsi_bands: int,
        lidar_bands: int,
        num_classes: int,
        scales: Sequence[int] = (8, 16, 24),
        grid: int = 8,
        dim: int = 64,
        depth: int = 5,
        heads: int = 4,
        dim_head: int = 16,
        mlp_dim: int = 8,
        decoder_dim: int = 32,
        oaf_kernel: int = 3,
        dropout: float = 0.1,
        emb_dropout: float = 0.1,
    ) -> None:
        """Initialise a new MIViT.

        Args:
            hsi_bands: HSI bands (first in the input).
            lidar_bands: LiDAR bands (after the HSI bands).
            num_classes: Number of classes.
            scales: Sides of the centre crops encoded per modality.
            grid: Side of the pooled maps (``grid**2`` tokens).
            dim: Token / feature dimension.
            depth: Transformer layers.
            heads: Attention heads.
            dim_head: Dimension per head.
            mlp_dim: Hidden size of the transformer MLPs.
            decoder_dim: Channels of the reconstruction decoder.
            oaf_kernel: ``k`` of the OAF convolutions.
            dropout: Dropout in the transformer.
            emb_dropout: Dropout on the token embeddings.
        """
        super().__init__()
        self.hsi_bands = hsi_bands
        self.lidar_bands = lidar_bands
        self.num_classes = num_classes
        self.scales = tuple(scales)
        self.patch_size = max(self.scales)
        self.grid = grid
        self.hsi_encoder = MultiScaleEncoder(hsi_bands, dim, scales, grid)
        self.lidar_encoder = MultiScaleEncoder(lidar_bands, dim, scales, grid)
        self.oaf = OrientedAttentionFusion(dim, oaf_kernel)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + 1, dim) * 0.02)
        self.emb_drop = nn.Dropout(emb_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, dim_head, mlp_dim, dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        # Lightweight classifiers: HSI, LiDAR and the CNN (OAF) fusion.
        self.hsi_head = nn.Linear(dim, num_classes)
        self.lidar_head = nn.Linear(dim, num_classes)
        self.cnn_head = nn.Linear(dim, num_classes)
        # Reconstruction decoder: tokens -> every crop of both modalities.
        bands = hsi_bands + lidar_bands
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, decoder_dim, 1),
            nn.GELU(),
            nn.Conv2d(decoder_dim, decoder_dim, 3, padding=1),
            nn.GELU(),
        )
        self.decoder_heads = nn.ModuleList(
            nn.Conv2d(decoder_dim, bands, 1) for _ in self.scales
        )

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Classify the centre pixels of patches.

        Args:
            x: B x (hsi + lidar) x P x P patches, ``P >= max(scales)``.

        Returns:
            ``logits`` (B x K, fused), ``aux_logits`` (dict of B x K: ``hsi``,
            ``lidar``, ``cnn``), ``reconstruction`` and ``reconstruction_target``
            (lists over the scales of B x C x s x s), ``features`` (dict of
            B x dim: ``hsi``, ``lidar``, ``fused``).
        """
        hsi = x[:, : self.hsi_bands]
        lidar = x[:, self.hsi_bands : self.hsi_bands + self.lidar_bands]
        a, b, fused = self.oaf(self.hsi_encoder(hsi), self.lidar_encoder(lidar))
        tokens = fused.flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        t = self.emb_drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)
        for block in self.blocks:
            t = block(t)
        t = self.norm(t)
        z = t[:, 0]
        z_hsi = a.mean((2, 3))
        z_lidar = b.mean((2, 3))
        g = self.grid
        decoded = self.decoder(t[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, g, g))
        recon, targets = [], []
        for s, head in zip(self.scales, self.decoder_heads, strict=True):
            up = F.interpolate(
                decoded, size=(s, s), mode='bilinear', align_corners=False
            )
            recon.append(head(up))
            targets.append(centre_crop(x[:, : self.hsi_bands + self.lidar_bands], s))
        return {
            'logits': self.head(z),
            'aux_logits': {
                'hsi': self.hsi_head(z_hsi),
                'lidar': self.lidar_head(z_lidar),
                'cnn': self.cnn_head(fused.mean((2, 3))),
            },
            'reconstruction': recon,
            'reconstruction_target': targets,
            'features': {'hsi': z_hsi, 'lidar': z_lidar, 'fused': z},
        }


def mivit_base(
    hsi_bands: int = 144, lidar_bands: int = 1, num_classes: int = 15, **kwargs: Any
) -> MIViT:
    """MIViT as in the paper's code (dim 64, 5 layers, 4 heads, crops 8/16/24).

    Args:
        hsi_bands: HSI bands.
        lidar_bands: LiDAR bands.
        num_classes: Number of classes.
        **kwargs: Override any other :class:`MIViT` argument.

    Returns:
        The model.
    """
    return MIViT(hsi_bands, lidar_bands, num_classes, **kwargs)


def mivit_tiny(
    hsi_bands: int = 144, lidar_bands: int = 1, num_classes: int = 15, **kwargs: Any
) -> MIViT:
    """A tiny MIViT for tests and CPU runs (crops 4/6/8 pooled to 4 x 4, dim 16, 2 layers).

    Args:
        hsi_bands: HSI bands.
        lidar_bands: LiDAR bands.
        num_classes: Number of classes.
        **kwargs: Override any other :class:`MIViT` argument.

    Returns:
        The model.
    """
    args: dict[str, Any] = {
        'scales': (4, 6, 8),
        'grid': 4,
        'dim': 16,
        'depth': 2,
        'heads': 2,
        'dim_head': 8,
        'mlp_dim': 16,
        'decoder_dim': 8,
        'dropout': 0.0,
        'emb_dropout': 0.0,
    }
    args.update(kwargs)
    return MIViT(hsi_bands, lidar_bands, num_classes, **args)
