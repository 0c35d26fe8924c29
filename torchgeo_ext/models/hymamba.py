"""HyMamba: the one-stream hyperspectral tracker with spectral state-space scans."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .hyat import BASE_ARGS, TINY_ARGS, HyATracker, build_tracker
from .mamba import MambaBlock


class SpectralScan(nn.Module):
    """Per-patch selective scan over the hyperspectral bands."""

    def __init__(self, patch_size: int, dim: int, d_state: int = 16) -> None:
        """Initialise a new SpectralScan.

        Args:
            patch_size: Side of the patches (as the ViT's).
            dim: Token dimension.
            d_state: State size of the scan.
        """
        super().__init__()
        self.band_embed = nn.Conv2d(1, dim, patch_size, patch_size)
        self.norm = nn.LayerNorm(dim)
        self.scan = MambaBlock(dim, d_state=d_state, expand=1.0)

    def forward(self, hsi: Tensor) -> Tensor:
        """Spectral tokens of a cube.

        Args:
            hsi: B x bands x H x W.

        Returns:
            B x N x dim, one token per patch (row-major).
        """
        b, c, h, w = hsi.shape
        e = self.band_embed(hsi.reshape(b * c, 1, h, w))
        dim, n = e.shape[1], e.shape[2] * e.shape[3]
        seq = e.reshape(b, c, dim, n).permute(0, 3, 1, 2).reshape(b * n, c, dim)
        seq = seq + self.scan(self.norm(seq))
        return seq.mean(1).reshape(b, n, dim)


class HyperspectralMamba(nn.Module):
    """HSM: horizontal, vertical and spectral selective scans of spectral tokens."""

    def __init__(self, dim: int, d_state: int = 16, groups: int = 8) -> None:
        """Initialise a new HyperspectralMamba.

        Args:
            dim: Token dimension.
            d_state: State size of the scans.
            groups: Channel groups of the spectral scan (must divide ``dim``).

        Raises:
            ValueError: If ``groups`` does not divide ``dim``.
        """
        super().__init__()
        if dim % groups:
            raise ValueError(f'groups ({groups}) must divide dim ({dim})')
        self.groups = groups
        self.norm = nn.LayerNorm(dim)
        self.horizontal = MambaBlock(dim, d_state=d_state, expand=1.0)
        self.vertical = MambaBlock(dim, d_state=d_state, expand=1.0)
        self.spectral = MambaBlock(dim // groups, d_state=d_state, expand=2.0)

    def forward(self, s: Tensor, grids: tuple[int, ...]) -> Tensor:
        """Refine spectral tokens.

        Args:
            s: B x N x dim tokens of several square grids, concatenated
                (template first, then search), each row-major.
            grids: Side of each grid.

        Returns:
            B x N x dim.
        """
        b, n, d = s.shape
        x = self.norm(s)
        # Column-major order of each grid, grids kept in the same order.
        order, start = [], 0
        for g in grids:
            index = torch.arange(g * g, device=s.device).reshape(g, g).T.reshape(-1)
            order.append(index + start)
            start += g * g
        perm = torch.cat(order)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(n, device=s.device)
        vertical = self.vertical(x[:, perm])[:, inverse]
        spectral = self.spectral(x.reshape(b * n, self.groups, d // self.groups))
        return s + self.horizontal(x) + vertical + spectral.reshape(b, n, d)


class SpectralStateIntegration(nn.Module):
    """SSI: spectral state <- joint tokens, refined by HSM, added back to the tokens."""

    def __init__(self, dim: int, d_state: int = 16, groups: int = 8) -> None:
        """Initialise a new SpectralStateIntegration.

        Args:
            dim: Token dimension.
            d_state: State size of the HSM scans.
            groups: Channel groups of the HSM spectral scan.
        """
        super().__init__()
        self.take = nn.Linear(dim, dim)
        self.hsm = HyperspectralMamba(dim, d_state, groups)
        self.give = nn.Linear(dim, dim)
        nn.init.zeros_(self.give.weight)
        nn.init.zeros_(self.give.bias)

    def forward(
        self, x: Tensor, s: Tensor, grids: tuple[int, ...]
    ) -> tuple[Tensor, Tensor]:
        """Integrate the spectral state into the joint tokens.

        Args:
            x: B x N x dim joint tokens.
            s: B x N x dim spectral state.
            grids: Sides of the token grids (template, search).

        Returns:
            The updated joint tokens and spectral state.
        """
        s = self.hsm(s + self.take(x), grids)
        return x + self.give(s), s


class HyMambaTracker(HyATracker):
    """HyA-T's one-stream tracker with spectral scans and SSI modules."""

    def __init__(
        self,
        hsi_bands: int = 16,
        colour_bands: int = 3,
        template_size: int = 128,
        search_size: int = 256,
        *,
        d_state: int = 16,
        ssi_every: int = 1,
        ssi_groups: int = 8,
        **kwargs: Any,
    ) -> None:
        """Initialise a new HyMambaTracker.

        Args:
            hsi_bands: HSI bands (16 VIS, 25 NIR, 15 RedNIR).
            colour_bands: Colour bands before the HSI bands in the input.
            template_size: Side of the template crops.
            search_size: Side of the search crops.
            d_state: State size of the selective scans.
            ssi_every: An SSI module after every this many ViT blocks.
            ssi_groups: Channel groups of the HSM spectral scans.
            **kwargs: :class:`~torchgeo_ext.models.hyat.HyATracker` arguments
                (``patch_size``, ``dim``, ``depth``, ...).

        Raises:
            ValueError: If ``ssi_every`` is not positive.
        """
        super().__init__(
            hsi_bands,
            colour_bands,
            template_size=template_size,
            search_size=search_size,
            **kwargs,
        )
        if ssi_every < 1:
            raise ValueError(f'ssi_every must be positive, got {ssi_every}')
        dim = self.pos_embed_search.shape[-1]
        # The spectral scan replaces HyA-T's HSI patch embedding.
        del self.spectral_embed
        self.spectral_scan = SpectralScan(self.patch_size, dim, d_state)
        self.ssi_every = ssi_every
        self.ssi = nn.ModuleList(
            SpectralStateIntegration(dim, d_state, ssi_groups)
            for _ in range(len(self.blocks) // ssi_every)
        )

    def forward(self, template: Tensor, search: Tensor) -> dict[str, Tensor]:
        """Track: locate the template's target in the search crops.

        Args:
            template: B x (colour + hsi) x t x t template crops.
            search: B x (colour + hsi) x s x s search crops.

        Returns:
            The head's ``score``, ``size`` and ``offset`` maps and
            ``bbox_xyxy`` (B x 4, search-crop pixels), as HyA-T.
        """
        x, s = self.embed(template, search)
        grids = (self.template_grid, self.search_grid)
        for i, block in enumerate(self.blocks):
            x = block(x, s)
            if (i + 1) % self.ssi_every == 0 and (i + 1) // self.ssi_every <= len(
                self.ssi
            ):
                x, s = self.ssi[(i + 1) // self.ssi_every - 1](x, s, grids)
        return self.predict_boxes(x)

    def spectral_tokens(self, hsi: Tensor) -> Tensor:
        """The spectral scan's tokens of one crop (replacing HyA-T's embedding).

        Args:
            hsi: B x hsi x side x side HSI bands of a crop.

        Returns:
            B x (side / patch)^2 x dim tokens.
        """
        out: Tensor = self.spectral_scan(hsi)
        return out


def hymamba_tiny(
    hsi_bands: int = 16, template_size: int = 32, search_size: int = 64, **kwargs: Any
) -> HyMambaTracker:
    """A tiny HyMamba for tests and CPU runs (patch 8, dim 32, depth 2, d_state 4).

    Args:
        hsi_bands: HSI bands.
        template_size: Side of the template crops.
        search_size: Side of the search crops.
        **kwargs: Override any other :class:`HyMambaTracker` argument.

    Returns:
        The model.
    """
    return build_tracker(
        HyMambaTracker,
        hsi_bands,
        template_size,
        search_size,
        {**TINY_ARGS, 'd_state': 4, 'ssi_groups': 4},
        kwargs,
    )


def hymamba_base(
    hsi_bands: int = 16, template_size: int = 128, search_size: int = 256, **kwargs: Any
) -> HyMambaTracker:
    """HyMamba on a ViT-B/16 backbone (depth 12, dim 768), an SSI after every 3 blocks.

    Args:
        hsi_bands: HSI bands.
        template_size: Side of the template crops.
        search_size: Side of the search crops.
        **kwargs: Override any other :class:`HyMambaTracker` argument.

    Returns:
        The model.
    """
    return build_tracker(
        HyMambaTracker,
        hsi_bands,
        template_size,
        search_size,
        {**BASE_ARGS, 'd_state': 16, 'ssi_every': 3, 'ssi_groups': 8},
        kwargs,
    )
