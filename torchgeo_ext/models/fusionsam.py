"""FusionSAM: RGB-thermal semantic segmentation with Segment Anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from torch import Tensor, nn

from .sam import build_sam, freeze

__all__ = [
    'FusionSAM',
    'FusionSAMOutput',
    'InterDomainFusion',
    'VectorQuantizer',
    'fusionsam_tiny',
    'fusionsam_vit_b',
    'fusionsam_vit_h',
    'fusionsam_vit_l',
]


@dataclass
class FusionSAMOutput:
    """What :meth:`FusionSAM.forward_with_latents` returns.

    Attributes:
        logits: (B, K, H, W) class logits at the input size.
        latents: Per modality ``(z, e)``: the projected embeddings and the
            code vectors chosen for them, for the VQ losses.
        codes: Per modality, the (B, h * w) chosen code indices.
    """

    logits: Tensor
    latents: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    codes: list[Tensor] = field(default_factory=list)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantisation with a straight-through estimator."""

    def __init__(self, num_codes: int, dim: int) -> None:
        """Initialise a new VectorQuantizer.

        Args:
            num_codes: Codebook size.
            dim: Code vector width.
        """
        super().__init__()
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1 / num_codes, 1 / num_codes)
        # Codes start as latents of the first training batch: a codebook far
        # from the data would map every token to a few codes (collapse).
        self.initialized: Tensor
        self.register_buffer('initialized', torch.tensor(False))

    @torch.no_grad()
    def _init_from(self, flat: Tensor) -> None:
        picks = torch.randint(
            flat.shape[0], (self.codebook.num_embeddings,), device=flat.device
        )
        noise = torch.randn_like(self.codebook.weight) * 1e-3
        self.codebook.weight.copy_(flat[picks].detach() + noise)
        self.initialized.fill_(True)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Quantise tokens.

        Args:
            z: (B, N, D) latents.

        Returns:
            ``(z + sg[e - z], e, indices)``: the straight-through output (the
            values of ``e``, the gradient of ``z``), the chosen code vectors
            ``e`` (B, N, D) and their indices (B, N).
        """
        flat = z.reshape(-1, z.shape[-1])
        if self.training and not bool(self.initialized):
            self._init_from(flat)
        codes = self.codebook.weight
        distance = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ codes.t()
            + codes.pow(2).sum(1)[None]
        )
        indices = distance.argmin(dim=1).view(z.shape[:-1])
        quantized = self.codebook(indices)
        return z + (quantized - z).detach(), quantized, indices


class _CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention (queries from one domain, keys/values from the other) + MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, query: Tensor, context: Tensor, pos: Tensor) -> Tensor:
        q = self.norm_q(query)
        kv = self.norm_kv(context)
        attended, _ = self.attention(q + pos, kv + pos, kv, need_weights=False)
        x = query + attended
        return x + self.mlp(self.norm_mlp(x))


class InterDomainFusion(nn.Module):
    """Cross-attention fusion of two token sets into one."""

    def __init__(self, dim: int, num_heads: int, depth: int = 1) -> None:
        """Initialise a new InterDomainFusion.

        Args:
            dim: Token width.
            num_heads: Attention heads.
            depth: Rounds of two-way cross-attention.
        """
        super().__init__()
        self.rgb_from_thermal = nn.ModuleList(
            _CrossAttentionBlock(dim, num_heads) for _ in range(depth)
        )
        self.thermal_from_rgb = nn.ModuleList(
            _CrossAttentionBlock(dim, num_heads) for _ in range(depth)
        )
        self.merge = nn.Linear(2 * dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, rgb: Tensor, thermal: Tensor, pos: Tensor) -> Tensor:
        """Fuse two token sets of the same grid.

        Args:
            rgb: (B, N, D) tokens of the visible image.
            thermal: (B, N, D) tokens of the thermal image.
            pos: (1, N, D) positional encoding of the grid.

        Returns:
            (B, N, D) fused tokens.
        """
        for to_rgb, to_thermal in zip(self.rgb_from_thermal, self.thermal_from_rgb):
            rgb, thermal = to_rgb(rgb, thermal, pos), to_thermal(thermal, rgb, pos)
        fused: Tensor = self.norm(self.merge(torch.cat([rgb, thermal], dim=-1)))
        return fused


class FusionSAM(nn.Module):
    """FusionSAM: frozen SAM encoder, VQ latent tokens, cross-attention fusion, prompted decoder.

    Input: (B, C, H, W) images scaled to [0, 1] (the data modules divide by
    255) with the visible bands at ``rgb_bands`` and the thermal band at
    ``thermal_band``. Output: (B, num_classes, H, W) logits.
    """

    def __init__(
        self,
        sam: Sam,
        num_classes: int,
        *,
        codebook_size: int = 512,
        num_prompt_tokens: int = 4,
        fusion_depth: int = 1,
        fusion_heads: int = 8,
        rgb_bands: Sequence[int] = (0, 1, 2),
        thermal_band: int = 3,
        freeze_image_encoder: bool = True,
    ) -> None:
        """Initialise a new FusionSAM.

        Args:
            sam: A SAM (its image encoder is frozen; prompt encoder and mask
                decoder are trained).
            num_classes: Output classes (one class-conditioned prompt each).
            codebook_size: Code vectors per modality codebook.
            num_prompt_tokens: Sparse prompt tokens made from the fused tokens.
            fusion_depth: Rounds of two-way cross-attention.
            fusion_heads: Heads of the fusion attention.
            rgb_bands: Input bands of the visible image (three).
            thermal_band: Input band of the thermal image.
            freeze_image_encoder: Freeze SAM's image encoder (the paper does).

        Raises:
            ValueError: For inconsistent arguments.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f'num_classes must be positive, got {num_classes}')
        if len(rgb_bands) != 3:
            raise ValueError(f'rgb_bands needs three bands, got {list(rgb_bands)}')
        self.sam = sam
        self.num_classes = num_classes
        self.rgb_bands = [int(b) for b in rgb_bands]
        self.thermal_band = int(thermal_band)
        self.freeze_image_encoder = freeze_image_encoder
        if freeze_image_encoder:
            freeze(self.sam.image_encoder)
        dim = int(self.sam.prompt_encoder.embed_dim)
        if dim % fusion_heads:
            fusion_heads = max(h for h in range(1, fusion_heads + 1) if dim % h == 0)
        self.embed_dim = dim
        self.image_size = int(self.sam.image_encoder.img_size)
        # LSTG: per-modality latent projection and codebook
        self.latent_rgb = nn.Conv2d(dim, dim, 1)
        self.latent_thermal = nn.Conv2d(dim, dim, 1)
        self.quantizer_rgb = VectorQuantizer(codebook_size, dim)
        self.quantizer_thermal = VectorQuantizer(codebook_size, dim)
        self.fusion = InterDomainFusion(dim, fusion_heads, fusion_depth)
        # FMP: dense prompt projection (zero-initialised) and sparse prompt queries
        self.dense_prompt = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.dense_prompt.weight)
        assert self.dense_prompt.bias is not None
        nn.init.zeros_(self.dense_prompt.bias)
        self.prompt_queries = nn.Parameter(torch.randn(num_prompt_tokens, dim) * 0.02)
        self.prompt_attention = nn.MultiheadAttention(
            dim, fusion_heads, batch_first=True
        )
        self.prompt_norm = nn.LayerNorm(dim)
        self.class_tokens = nn.Parameter(torch.randn(num_classes, dim) * 0.02)

    def train(self, mode: bool = True) -> FusionSAM:
        """Set the training mode; a frozen image encoder always stays in eval mode.

        Args:
            mode: Training mode.

        Returns:
            This module.
        """
        super().train(mode)
        if self.freeze_image_encoder:
            self.sam.image_encoder.eval()
        return self

    def _resized_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.image_size / max(height, width)
        return round(height * scale), round(width * scale)

    def _encode(self, x: Tensor) -> Tensor:
        """SAM image embeddings of (N, 3, H, W) images in [0, 1]."""
        height, width = x.shape[-2:]
        size = self._resized_size(height, width)
        if size != (height, width):
            x = F.interpolate(
                x, size=size, mode='bilinear', align_corners=False, antialias=True
            )
        x = self.sam.preprocess(x * 255)
        if self.freeze_image_encoder:
            with torch.no_grad():
                embedding: Tensor = self.sam.image_encoder(x)
            return embedding
        embedding = self.sam.image_encoder(x)
        return embedding

    def _tokens(
        self, embedding: Tensor, project: nn.Module, quantizer: VectorQuantizer
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z = project(embedding).flatten(2).transpose(1, 2)  # (B, N, D)
        straight, quantized, indices = quantizer(z)
        return straight, z, quantized, indices

    def forward_with_latents(self, x: Tensor) -> FusionSAMOutput:
        """Segment and return what the VQ losses need.

        Args:
            x: (B, C, H, W) images in [0, 1].

        Returns:
            Logits, latents and code indices.
        """
        batch, _, height, width = x.shape
        rgb = x[:, self.rgb_bands]
        thermal = x[:, self.thermal_band : self.thermal_band + 1].expand(-1, 3, -1, -1)
        embeddings = self._encode(torch.cat([rgb, thermal]))
        emb_rgb, emb_thermal = embeddings[:batch], embeddings[batch:]
        grid = emb_rgb.shape[-2:]

        tok_rgb, z_rgb, e_rgb, i_rgb = self._tokens(
            emb_rgb, self.latent_rgb, self.quantizer_rgb
        )
        tok_th, z_th, e_th, i_th = self._tokens(
            emb_thermal, self.latent_thermal, self.quantizer_thermal
        )
        image_pe = self.sam.prompt_encoder.get_dense_pe()  # (1, D, h, w)
        pos = image_pe.flatten(2).transpose(1, 2)
        fused = self.fusion(tok_rgb, tok_th, pos)  # (B, N, D)

        fused_map = fused.transpose(1, 2).reshape(batch, self.embed_dim, *grid)
        no_mask = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = no_mask + self.dense_prompt(fused_map)  # (B, D, h, w)
        queries = self.prompt_queries[None].expand(batch, -1, -1)
        summary, _ = self.prompt_attention(
            queries, fused + pos, fused, need_weights=False
        )
        summary = self.prompt_norm(summary + queries)  # (B, S, D)

        masks = []
        for b in range(batch):
            sparse = torch.cat(
                [
                    self.class_tokens[:, None],
                    summary[b][None].expand(self.num_classes, -1, -1),
                ],
                dim=1,
            )  # (K, 1 + S, D)
            low_res, _ = self.sam.mask_decoder(
                image_embeddings=emb_rgb[b : b + 1],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense[b : b + 1],
                multimask_output=False,
            )
            masks.append(low_res[:, 0])  # (K, 4h, 4w)
        low = torch.stack(masks)  # (B, K, 4h, 4w)
        logits = self.sam.postprocess_masks(
            low, self._resized_size(height, width), (height, width)
        )
        return FusionSAMOutput(
            logits=logits, latents=[(z_rgb, e_rgb), (z_th, e_th)], codes=[i_rgb, i_th]
        )

    def forward(self, x: Tensor) -> Tensor:
        """Compute class logits.

        Args:
            x: (B, C, H, W) images in [0, 1].

        Returns:
            (B, num_classes, H, W) logits.
        """
        return self.forward_with_latents(x).logits


def _fusionsam(
    variant: str,
    num_classes: int,
    sam_checkpoint: str | os.PathLike[str] | None,
    **kwargs: object,
) -> FusionSAM:
    sam = build_sam(variant, sam_checkpoint)
    return FusionSAM(sam, num_classes, **kwargs)  # type: ignore[arg-type]


def fusionsam_vit_b(
    num_classes: int = 9,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    **kwargs: object,
) -> FusionSAM:
    """FusionSAM on SAM ViT-B (the paper's configuration).

    Args:
        num_classes: Output classes.
        sam_checkpoint: SAM ViT-B state dict (``sam_vit_b_01ec64.pth``); None
            leaves SAM randomly initialised (only useful for tests).
        **kwargs: More :class:`FusionSAM` arguments.

    Returns:
        The model.
    """
    return _fusionsam('vit_b', num_classes, sam_checkpoint, **kwargs)


def fusionsam_vit_l(
    num_classes: int = 9,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    **kwargs: object,
) -> FusionSAM:
    """FusionSAM on SAM ViT-L.

    Args:
        num_classes: Output classes.
        sam_checkpoint: SAM ViT-L state dict; None: random initialisation.
        **kwargs: More :class:`FusionSAM` arguments.

    Returns:
        The model.
    """
    return _fusionsam('vit_l', num_classes, sam_checkpoint, **kwargs)


def fusionsam_vit_h(
    num_classes: int = 9,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    **kwargs: object,
) -> FusionSAM:
    """FusionSAM on SAM ViT-H.

    Args:
        num_classes: Output classes.
        sam_checkpoint: SAM ViT-H state dict; None: random initialisation.
        **kwargs: More :class:`FusionSAM` arguments.

    Returns:
        The model.
    """
    return _fusionsam('vit_h', num_classes, sam_checkpoint, **kwargs)


def fusionsam_tiny(
    num_classes: int = 9,
    sam_checkpoint: str | os.PathLike[str] | None = None,
    **kwargs: object,
) -> FusionSAM:
    """FusionSAM on the tiny test SAM (two-layer ViT, 32 wide, 256 px).

    Args:
        num_classes: Output classes.
        sam_checkpoint: A tiny SAM state dict; None: random initialisation.
        **kwargs: More :class:`FusionSAM` arguments (default codebook 64 codes).

    Returns:
        The model.
    """
    kwargs.setdefault('codebook_size', 64)
    kwargs.setdefault('fusion_heads', 2)
    return _fusionsam('tiny', num_classes, sam_checkpoint, **kwargs)
