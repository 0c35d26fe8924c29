"""HyA-T: a one-stream ViT tracker with hyperspectral adapters."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers.attention import Attention
from timm.layers.mlp import Mlp
from timm.layers.patch_embed import PatchEmbed
from timm.layers.pos_embed import resample_abs_pos_embed
from torch import Tensor, nn
from torchvision.ops import box_convert

from ..errors import InvalidInputError
from .weights import read_state_dict


class LowRankAdapter(nn.Module):
    """``up(act(down(x)))`` with a zero-initialised up-projection."""

    def __init__(self, dim: int, hidden: int) -> None:
        """Initialise a new LowRankAdapter.

        Args:
            dim: Token dimension.
            hidden: Bottleneck dimension (rank).
        """
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor, extra: Tensor | None = None) -> Tensor:
        """Adapt tokens.

        Args:
            x: B x N x dim tokens.
            extra: Optional B x N x hidden term added in the bottleneck.

        Returns:
            B x N x dim adapter output.
        """
        z = self.down(x)
        if extra is not None:
            z = z + extra
        return self.up(F.gelu(z))


class HyABlock(nn.Module):
    """Pre-norm transformer block with HAS and HAM adapters."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, rank: int, bottleneck: int
    ) -> None:
        """Initialise a new HyABlock.

        Args:
            dim: Token dimension.
            heads: Attention heads.
            mlp_ratio: MLP hidden size relative to ``dim``.
            rank: HAS rank.
            bottleneck: HAM bottleneck size.
        """
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))  # GELU, timm's names
        self.has = LowRankAdapter(dim, rank)
        self.has_spectral = nn.Linear(dim, rank, bias=False)
        self.ham = LowRankAdapter(dim, bottleneck)

    def forward(self, x: Tensor, spectral: Tensor) -> Tensor:
        """Run the block.

        Args:
            x: B x N x dim joint template + search tokens.
            spectral: B x N x dim hyperspectral tokens.

        Returns:
            B x N x dim.
        """
        h = self.norm1(x)
        x = x + self.attn(h) + self.has(h, self.has_spectral(spectral))
        h = self.norm2(x)
        return x + self.mlp(h) + self.ham(h)


class CenterHead(nn.Module):
    """Centre head: score map, normalised box size and sub-cell offset."""

    def __init__(self, dim: int, hidden: int) -> None:
        """Initialise a new CenterHead.

        Args:
            dim: Token dimension.
            hidden: Channels of the convolutional branches.
        """
        super().__init__()

        def branch(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(dim, hidden, 3, padding=1),
                nn.BatchNorm2d(hidden),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, out, 1),
            )

        self.score = branch(1)
        self.size = branch(2)
        self.offset = branch(2)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Predict the maps.

        Args:
            x: B x dim x H x W search features.

        Returns:
            ``score`` (B x 1 x H x W logits), ``size`` (B x 2 x H x W, w/h over
            the search side, in (0, 1)) and ``offset`` (B x 2 x H x W, in (0, 1)).
        """
        return {
            'score': self.score(x),
            'size': self.size(x).sigmoid(),
            'offset': self.offset(x).sigmoid(),
        }


class HyATracker(nn.Module):
    """One-stream ViT tracker with HEI, HAS and HAM hyperspectral adapters.

    Inputs stack the colour bands first and the HSI bands after them (HOTC with
    ``modality=('falsecolor', 'hsi')``), any number of HSI bands. The adapters'
    up-projections and the HEI projection start at zero, so a fresh model gives
    exactly the output of its colour backbone.
    """

    #: Parameter-name prefixes of the colour backbone (frozen by
    #: :meth:`freeze_backbone`, loaded by :meth:`load_backbone`).
    backbone_prefixes = ('patch_embed.', 'pos_embed_', 'norm.')
    backbone_block_parts = ('norm1.', 'attn.', 'norm2.', 'mlp.')

    def __init__(
        self,
        hsi_bands: int = 16,
        colour_bands: int = 3,
        template_size: int = 128,
        search_size: int = 256,
        patch_size: int = 16,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        has_rank: int = 16,
        ham_bottleneck: int = 32,
        head_hidden: int = 256,
    ) -> None:
        """Initialise a new HyATracker.

        Args:
            hsi_bands: HSI bands (16 VIS, 25 NIR, 15 RedNIR).
            colour_bands: Colour bands before the HSI bands in the input.
            template_size: Side of the template crops.
            search_size: Side of the search crops.
            patch_size: ViT patch size (must divide both sizes).
            dim: Token dimension.
            depth: Number of blocks.
            heads: Attention heads.
            mlp_ratio: MLP hidden size relative to ``dim``.
            has_rank: Rank of the HAS adapters.
            ham_bottleneck: Bottleneck of the HAM adapters.
            head_hidden: Channels of the centre head.

        Raises:
            ValueError: If the sizes are not multiples of ``patch_size``.
        """
        super().__init__()
        if template_size % patch_size or search_size % patch_size:
            raise ValueError(
                f'template_size ({template_size}) and search_size ({search_size}) '
                f'must be multiples of patch_size ({patch_size})'
            )
        self.hsi_bands = hsi_bands
        self.colour_bands = colour_bands
        self.template_size = template_size
        self.search_size = search_size
        self.patch_size = patch_size
        self.template_grid = template_size // patch_size
        self.search_grid = search_size // patch_size
        # Colour backbone.
        # Template and search crops differ in size: no fixed image size.
        self.patch_embed = PatchEmbed(
            img_size=None,
            patch_size=patch_size,
            in_chans=colour_bands,
            embed_dim=dim,
            strict_img_size=False,
        )
        self.pos_embed_template = nn.Parameter(
            torch.randn(1, self.template_grid**2, dim) * 0.02
        )
        self.pos_embed_search = nn.Parameter(
            torch.randn(1, self.search_grid**2, dim) * 0.02
        )
        self.blocks = nn.ModuleList(
            HyABlock(dim, heads, mlp_ratio, has_rank, ham_bottleneck)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # Hyperspectral parts.
        self.hei = nn.Conv2d(hsi_bands, colour_bands, 1)
        nn.init.zeros_(self.hei.weight)
        if self.hei.bias is not None:
            nn.init.zeros_(self.hei.bias)
        self.spectral_embed = nn.Conv2d(hsi_bands, dim, patch_size, patch_size)
        self.head = CenterHead(dim, head_hidden)

    def _is_backbone(self, name: str) -> bool:
        if name.startswith(self.backbone_prefixes):
            return True
        if name.startswith('blocks.'):
            part = name.split('.', 2)[2]
            return part.startswith(self.backbone_block_parts)
        return False

    def backbone_state_dict(self) -> dict[str, Tensor]:
        """The colour-backbone weights (what :meth:`load_backbone` reads).

        Returns:
            The state dict restricted to the backbone.
        """
        return {k: v for k, v in self.state_dict().items() if self._is_backbone(k)}

    def freeze_backbone(self) -> None:
        """Freeze the colour backbone; adapters, HEI and head stay trainable."""
        for name, param in self.named_parameters():
            param.requires_grad_(not self._is_backbone(name))

    def load_backbone(self, path: str | os.PathLike[str]) -> list[str]:
        """Load pretrained backbone weights from a user-given file.

        The file is a state dict (possibly under ``state_dict``, ``model`` or
        ``net``) with this model's backbone names, which follow timm's ViT
        (``patch_embed.proj``, ``blocks.i.attn.qkv``, ``blocks.i.mlp.fc1``,
        ...). A ``pos_embed_template``/``pos_embed_search`` of another grid is
        resized bicubically; other shape mismatches and non-backbone keys are
        skipped. Nothing is downloaded.

        Args:
            path: The checkpoint file.

        Returns:
            The backbone keys that were loaded.

        Raises:
            MissingInputError: If the file does not exist.
            InvalidInputError: If it is unreadable or matches no backbone key.
        """
        state = read_state_dict(path)
        own = self.backbone_state_dict()
        loaded: dict[str, Tensor] = {}
        for key, value in state.items():
            key = key.removeprefix('model.').removeprefix('backbone.')
            if key not in own or not isinstance(value, Tensor):
                continue
            if key.startswith('pos_embed_') and value.shape != own[key].shape:
                value = _resize_square_pos_embed(value, own[key].shape[1])
            if value.shape == own[key].shape:
                loaded[key] = value
        if not loaded:
            raise InvalidInputError(path, 'no backbone weights of matching shape')
        self.load_state_dict(loaded, strict=False)
        return sorted(loaded)

    def forward(self, template: Tensor, search: Tensor) -> dict[str, Tensor]:
        """Track: locate the template's target in the search crops.

        Args:
            template: B x (colour + hsi) x t x t template crops.
            search: B x (colour + hsi) x s x s search crops.

        Returns:
            The head's ``score``, ``size`` and ``offset`` maps (see
            :class:`CenterHead`) and ``bbox_xyxy`` (B x 4, search-crop pixels,
            decoded at the score maximum).
        """
        x, h = self.embed(template, search)
        for block in self.blocks:
            x = block(x, h)
        return self.predict_boxes(x)

    def spectral_tokens(self, hsi: Tensor) -> Tensor:
        """The HSI branch's tokens of one crop (a subclass may replace it).

        Args:
            hsi: B x hsi x side x side HSI bands of a crop.

        Returns:
            B x (side / patch)^2 x dim tokens.
        """
        out: Tensor = self.spectral_embed(hsi).flatten(2).transpose(1, 2)
        return out

    def embed(self, template: Tensor, search: Tensor) -> tuple[Tensor, Tensor]:
        """Colour tokens (HSI mixed in by the HEI) and HSI tokens of both crops.

        Args:
            template: B x (colour + hsi) x t x t template crops.
            search: B x (colour + hsi) x s x s search crops.

        Returns:
            The colour tokens with their position embeddings and the
            :meth:`spectral_tokens`, template tokens first in both.
        """
        tokens, spectral = [], []
        for crop, pos in (
            (template, self.pos_embed_template),
            (search, self.pos_embed_search),
        ):
            colour = crop[:, : self.colour_bands]
            hsi = crop[:, self.colour_bands : self.colour_bands + self.hsi_bands]
            colour = colour + self.hei(hsi)
            tokens.append(self.patch_embed(colour) + pos)
            spectral.append(self.spectral_tokens(hsi))
        return torch.cat(tokens, dim=1), torch.cat(spectral, dim=1)

    def predict_boxes(self, x: Tensor) -> dict[str, Tensor]:
        """The head's maps and decoded boxes from the last block's tokens.

        Args:
            x: B x (template + search tokens) x dim.

        Returns:
            The head's maps and ``bbox_xyxy`` (see :meth:`forward`).
        """
        x = self.norm(x)
        n_t = self.template_grid**2
        g = self.search_grid
        feat = x[:, n_t:].transpose(1, 2).reshape(x.shape[0], -1, g, g)
        out: dict[str, Tensor] = self.head(feat)
        out['bbox_xyxy'] = self.decode(out)
        return out

    def decode(self, out: dict[str, Tensor]) -> Tensor:
        """Boxes at the score maximum.

        Args:
            out: The head's maps.

        Returns:
            B x 4 ``x1, y1, x2, y2`` in search-crop pixels.
        """
        score = out['score'].flatten(1)
        index = score.argmax(dim=1)
        return self.box_at(out, index)

    def box_at(self, out: dict[str, Tensor], index: Tensor) -> Tensor:
        """Boxes decoded at given score-map cells.

        Args:
            out: The head's maps.
            index: B flat cell indices (``row * grid + col``).

        Returns:
            B x 4 ``x1, y1, x2, y2`` in search-crop pixels.
        """
        g = self.search_grid
        b = index.shape[0]
        rows = torch.arange(b, device=index.device)
        size = out['size'].flatten(2)[rows, :, index]
        offset = out['offset'].flatten(2)[rows, :, index]
        cx = ((index % g).to(size.dtype) + offset[:, 0]) / g
        cy = ((index // g).to(size.dtype) + offset[:, 1]) / g
        box = box_convert(
            torch.stack([cx, cy, size[:, 0], size[:, 1]], 1), 'cxcywh', 'xyxy'
        )
        return box * self.search_size


#: :func:`hyat_tiny`'s architecture (patch 8, dim 32, depth 2).
TINY_ARGS: dict[str, Any] = {
    'patch_size': 8,
    'dim': 32,
    'depth': 2,
    'heads': 2,
    'mlp_ratio': 2.0,
    'has_rank': 4,
    'ham_bottleneck': 8,
    'head_hidden': 16,
}

#: :func:`hyat_base`'s architecture (ViT-B/16: depth 12, dim 768, 12 heads).
BASE_ARGS: dict[str, Any] = {
    'patch_size': 16,
    'dim': 768,
    'depth': 12,
    'heads': 12,
    'mlp_ratio': 4.0,
    'has_rank': 16,
    'ham_bottleneck': 32,
    'head_hidden': 256,
}


def build_tracker[T: HyATracker](
    cls: type[T],
    hsi_bands: int,
    template_size: int,
    search_size: int,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
) -> T:
    """Build a HyA-T family tracker from default arguments and overrides.

    Args:
        cls: :class:`HyATracker` or a subclass.
        hsi_bands: HSI bands.
        template_size: Side of the template crops.
        search_size: Side of the search crops.
        defaults: The variant's other arguments.
        overrides: Arguments replacing or adding to ``defaults``.

    Returns:
        The model.
    """
    args = {**defaults, **overrides}
    return cls(hsi_bands, template_size=template_size, search_size=search_size, **args)


def hyat_tiny(
    hsi_bands: int = 16, template_size: int = 32, search_size: int = 64, **kwargs: Any
) -> HyATracker:
    """A tiny HyA-T for tests and CPU runs (patch 8, dim 32, depth 2).

    Args:
        hsi_bands: HSI bands.
        template_size: Side of the template crops.
        search_size: Side of the search crops.
        **kwargs: Override any other :class:`HyATracker` argument.

    Returns:
        The model.
    """
    return build_tracker(
        HyATracker, hsi_bands, template_size, search_size, TINY_ARGS, kwargs
    )


def hyat_base(
    hsi_bands: int = 16, template_size: int = 128, search_size: int = 256, **kwargs: Any
) -> HyATracker:
    """HyA-T on a ViT-B/16 backbone (depth 12, dim 768, 12 heads).

    Args:
        hsi_bands: HSI bands.
        template_size: Side of the template crops.
        search_size: Side of the search crops.
        **kwargs: Override any other :class:`HyATracker` argument.

    Returns:
        The model.
    """
    return build_tracker(
        HyATracker, hsi_bands, template_size, search_size, BASE_ARGS, kwargs
    )


def _resize_square_pos_embed(pos: Tensor, tokens: int) -> Tensor:
    """Bicubically resize a 1 x N x dim square-grid position embedding.

    Non-square grids are returned unchanged (the caller then skips them).
    """
    side, new = round(pos.shape[1] ** 0.5), round(tokens**0.5)
    if side * side != pos.shape[1] or new * new != tokens:
        return pos
    return resample_abs_pos_embed(
        pos, [new, new], [side, side], num_prefix_tokens=0, antialias=False
    )
