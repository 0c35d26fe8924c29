"""SeaDATE: two-stream RGB-IR YOLO with dual-attention fusion and contrastive alignment."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .superyolo import ANCHORS, Detect
from .yolo_layers import C3, SPP, Conv, fuse_model

__all__ = [
    'ContrastiveAlignment',
    'DualAttentionFusion',
    'SeaDATE',
    'SelfAttention',
    'seadate_yolov5s',
    'two_stream_yolov5s',
]


class SelfAttention(nn.Module):
    """Multi-head self-attention over a token sequence (B, N, D)."""

    def __init__(self, dim: int, heads: int) -> None:
        """Initialise a new SelfAttention.

        Args:
            dim: Token dimension (a multiple of ``heads``).
            heads: Number of heads.
        """
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Attend.

        Args:
            x: Tokens (B, N, D).

        Returns:
            Tokens (B, N, D).
        """
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: attention and a GELU MLP, both residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0) -> None:
        """Initialise a new TransformerBlock.

        Args:
            dim: Token dimension.
            heads: Attention heads.
            mlp_ratio: Hidden width of the MLP relative to ``dim``.
        """
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Tokens (B, N, D).

        Returns:
            Tokens (B, N, D).
        """
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _heads(dim: int, head_dim: int = 32) -> int:
    """Heads of ``head_dim`` channels when ``dim`` splits evenly, else one."""
    return dim // head_dim if dim % head_dim == 0 and dim >= head_dim else 1


class DualAttentionFusion(nn.Module):
    """The DTF module: RGB and IR features fused by spatial- and channel-token attention.

    Both modalities are average-pooled to a ``grid x grid`` map. *Spatial
    tokens*: every cell of both maps is a token of ``C`` values (``2 grid^2``
    tokens, learnt position embeddings), so attention relates places across
    the modalities. *Channel tokens*: every channel of both maps is a token of
    ``grid^2`` values (``2 C`` tokens), so attention relates channels across
    the modalities. The two global results are summed with learnt weights,
    upsampled (bilinear) and added to the features together with a local
    branch (depthwise 3 x 3 convolution over both modalities); each stream
    continues with its enhanced features, and the fused output is their sum.
    """

    def __init__(self, channels: int, grid: int = 8) -> None:
        """Initialise a new DualAttentionFusion.

        Args:
            channels: Channels of each modality's features.
            grid: Side of the pooled token grid.
        """
        super().__init__()
        self.grid = grid
        tokens = grid * grid
        self.spatial_pos = nn.Parameter(torch.zeros(1, 2 * tokens, channels))
        self.channel_pos = nn.Parameter(torch.zeros(1, 2 * channels, tokens))
        nn.init.trunc_normal_(self.spatial_pos, std=0.02)
        nn.init.trunc_normal_(self.channel_pos, std=0.02)
        self.spatial = TransformerBlock(channels, _heads(channels))
        self.channel = TransformerBlock(tokens, _heads(tokens))
        self.branch_weights = nn.Parameter(torch.ones(2))
        self.local = Conv(2 * channels, 2 * channels, 3, groups=2 * channels)

    def forward(self, rgb: Tensor, ir: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Fuse the two modalities' features of one stage.

        Args:
            rgb: RGB features (B, C, H, W).
            ir: IR features (B, C, H, W).

        Returns:
            The enhanced RGB and IR features and their fusion (each B, C, H, W).
        """
        b, c, h, w = rgb.shape
        g = self.grid
        both = torch.cat((rgb, ir), dim=1)  # (B, 2C, H, W)
        pooled = F.adaptive_avg_pool2d(both, g)  # (B, 2C, g, g)
        # Spatial tokens: (B, 2 g^2, C), RGB cells then IR cells.
        cells = pooled.view(b, 2, c, g * g).permute(0, 1, 3, 2).reshape(b, -1, c)
        cells = self.spatial(cells + self.spatial_pos)
        spatial = cells.view(b, 2, g * g, c).permute(0, 1, 3, 2).reshape(b, 2 * c, g, g)
        # Channel tokens: (B, 2C, g^2), RGB channels then IR channels.
        chans = self.channel(pooled.flatten(2) + self.channel_pos)
        channel = chans.view(b, 2 * c, g, g)
        weights = self.branch_weights
        global_ = weights[0] * spatial + weights[1] * channel
        global_ = F.interpolate(global_, size=(h, w), mode='bilinear')
        out = both + self.local(both) + global_
        rgb_out, ir_out = out.split(c, dim=1)
        return rgb_out, ir_out, rgb_out + ir_out


class ContrastiveAlignment(nn.Module):
    """The CL module: InfoNCE between RGB and IR region embeddings of deep features.

    Each modality's features are average-pooled to a ``grid x grid`` map; every
    cell of every image is a region, embedded by a per-modality MLP and
    L2-normalised. The RGB and IR embeddings of the same region are the
    positive pair; every other region of the batch is a negative. The loss is
    the symmetric cross-entropy of the ``B grid^2 x B grid^2`` cosine
    similarities divided by ``temperature``. It has no effect on inference.
    """

    def __init__(
        self, channels: int, dim: int = 128, grid: int = 4, temperature: float = 0.1
    ) -> None:
        """Initialise a new ContrastiveAlignment.

        Args:
            channels: Channels of each modality's features.
            dim: Embedding dimension.
            grid: Side of the pooled region grid.
            temperature: InfoNCE temperature.
        """
        super().__init__()
        self.grid = grid
        self.temperature = temperature

        def head() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, dim)
            )

        self.rgb_head = head()
        self.ir_head = head()

    def embed(self, rgb: Tensor, ir: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised region embeddings of both modalities.

        Args:
            rgb: RGB features (B, C, H, W).
            ir: IR features (B, C, H, W).

        Returns:
            RGB and IR embeddings, (B grid^2, dim) each, in the same region order.
        """

        def regions(x: Tensor) -> Tensor:
            pooled = F.adaptive_avg_pool2d(x, self.grid)
            return pooled.flatten(2).transpose(1, 2).reshape(-1, x.shape[1])

        z_rgb = F.normalize(self.rgb_head(regions(rgb)), dim=1)
        z_ir = F.normalize(self.ir_head(regions(ir)), dim=1)
        return z_rgb, z_ir

    def forward(self, rgb: Tensor, ir: Tensor) -> Tensor:
        """The symmetric InfoNCE loss.

        Args:
            rgb: RGB features (B, C, H, W).
            ir: IR features (B, C, H, W).

        Returns:
            The loss (a scalar).
        """
        z_rgb, z_ir = self.embed(rgb, ir)
        logits = z_rgb @ z_ir.T / self.temperature
        target = torch.arange(len(logits), device=logits.device)
        return 0.5 * (
            F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)
        )


class Stream(nn.Module):
    """One modality's YOLOv5s-style backbone, as four stages (strides 4, 8, 16)."""

    def __init__(self, bands: int, ch: Sequence[int]) -> None:
        """Initialise a new Stream.

        Args:
            bands: Input bands of the modality.
            ch: Channels of the four stages (64, 128, 256, 512 at width 1).
        """
        super().__init__()
        self.stem = nn.Sequential(Conv(bands, ch[0], 3, 2), C3(ch[0], ch[0], 1))  # /2
        self.stage1 = nn.Sequential(Conv(ch[0], ch[1], 3, 2), C3(ch[1], ch[1], 3))  # /4
        self.stage2 = nn.Sequential(Conv(ch[1], ch[2], 3, 2), C3(ch[2], ch[2], 3))  # /8
        self.stage3 = nn.Sequential(  # /16
            Conv(ch[2], ch[3], 3, 2),
            SPP(ch[3], ch[3], (5, 9, 13)),
            C3(ch[3], ch[3], 1, shortcut=False),
        )


class SeaDATE(nn.Module):
    """Two-stream RGB-IR detector: DTF fusion at strides 4 and 8, CL at stride 16.

    Each modality has its own :class:`Stream`. At the two shallow stages the
    streams exchange information through :class:`DualAttentionFusion` (or,
    with ``dual_attention=False``, are simply added); the deep stage is fused
    by concatenation and a 1 x 1 convolution, and :class:`ContrastiveAlignment`
    adds its InfoNCE loss on the two deep features during training
    (:meth:`forward_with_losses`). The fused stride-4, 8 and 16 features go
    through SuperYOLO's two-level neck and its stride-4 anchor head
    (:class:`~torchgeo_ext.models.superyolo.Detect`), so training, decoding
    and post-processing are SuperYOLO's.

    In training mode :meth:`forward` returns raw head outputs; in eval mode the
    decoded predictions.
    """

    #: No super-resolution branch (the detection task reads this attribute).
    sr: nn.Module | None = None

    def __init__(
        self,
        num_classes: int = 1,
        rgb_bands: Sequence[int] = (0, 1, 2),
        ir_bands: Sequence[int] = (3,),
        width: float = 1.0,
        dual_attention: bool = True,
        contrast_weight: float = 0.1,
        temperature: float = 0.1,
        anchors: Sequence[Sequence[float]] = ANCHORS,
    ) -> None:
        """Initialise a new SeaDATE.

        Args:
            num_classes: Number of object classes.
            rgb_bands: RGB band indices of the input image.
            ir_bands: Infrared band indices of the input image.
            width: Channel multiplier (1: YOLOv5s widths 64-512; 0.25 for
                quick CPU training).
            dual_attention: Fuse the shallow stages with DTF (else addition).
            contrast_weight: Weight of the contrastive loss (0: no CL module).
            temperature: InfoNCE temperature.
            anchors: Anchor sizes in pixels of the stride-4 head.

        Raises:
            ValueError: If a band group is empty.
        """
        super().__init__()
        if not rgb_bands or not ir_bands:
            raise ValueError('rgb_bands and ir_bands must be non-empty')

        def ch(channels: int) -> int:
            return max(8, round(channels * width / 8) * 8)

        c = [ch(64), ch(128), ch(256), ch(512)]
        self.num_classes = num_classes
        self.rgb_bands = [int(b) for b in rgb_bands]
        self.ir_bands = [int(b) for b in ir_bands]
        self.rgb = Stream(len(self.rgb_bands), c)
        self.ir = Stream(len(self.ir_bands), c)
        self.fuse1: DualAttentionFusion | None = None
        self.fuse2: DualAttentionFusion | None = None
        if dual_attention:
            self.fuse1 = DualAttentionFusion(c[1])
            self.fuse2 = DualAttentionFusion(c[2])
        self.fuse3 = Conv(2 * c[3], c[3], 1)
        self.contrast_weight = contrast_weight
        self.contrast: ContrastiveAlignment | None = None
        if contrast_weight > 0:
            self.contrast = ContrastiveAlignment(c[3], temperature=temperature)
        # SuperYOLO's two-level neck on the fused features.
        self.h10 = Conv(c[3], c[2], 1)
        self.h13 = C3(2 * c[2], c[2], 1, shortcut=False)
        self.h14 = Conv(c[2], c[1], 1)
        self.h17 = C3(2 * c[1], c[1], 1, shortcut=False)
        self.detect = Detect(num_classes, c[1], anchors, stride=4)

    @property
    def bands(self) -> list[int]:
        """Input band indices the model reads (RGB, then IR)."""
        return self.rgb_bands + self.ir_bands

    def _fuse_stage(
        self, fuse: DualAttentionFusion | None, rgb: Tensor, ir: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One shallow stage's fusion: DTF, or the baseline's addition."""
        if fuse is None:
            return rgb, ir, rgb + ir
        return fuse(rgb, ir)

    def features(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        """Run both streams with their fusions.

        Args:
            x: Image (B, C, H, W); H and W multiples of 16.

        Returns:
            The fused stride-4, 8 and 16 features, and the deep RGB and IR
            features (stride 16) that the contrastive module compares.
        """
        rgb = self.rgb.stage1(self.rgb.stem(x[:, self.rgb_bands]))
        ir = self.ir.stage1(self.ir.stem(x[:, self.ir_bands]))
        rgb, ir, p4 = self._fuse_stage(self.fuse1, rgb, ir)
        rgb, ir, p8 = self._fuse_stage(
            self.fuse2, self.rgb.stage2(rgb), self.ir.stage2(ir)
        )
        deep_rgb, deep_ir = self.rgb.stage3(rgb), self.ir.stage3(ir)
        p16 = self.fuse3(torch.cat((deep_rgb, deep_ir), dim=1))
        return [p4, p8, p16], deep_rgb, deep_ir

    def head(self, fused: Sequence[Tensor]) -> Tensor:
        """The neck and the detection head.

        Args:
            fused: The fused stride-4, 8 and 16 features.

        Returns:
            Raw head output (B, 3, H/4, W/4, 5 + classes).
        """
        p4, p8, p16 = fused
        x10 = self.h10(p16)
        x = self.h13(torch.cat((F.interpolate(x10, scale_factor=2.0), p8), dim=1))
        x14 = self.h14(x)
        x = self.h17(torch.cat((F.interpolate(x14, scale_factor=2.0), p4), dim=1))
        out: Tensor = self.detect(x)
        return out

    def forward_raw(
        self, x: Tensor, with_sr: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Run the detector (SuperYOLO's interface; there is no SR branch).

        Args:
            x: Image (B, C, H, W); H and W multiples of 16.
            with_sr: Ignored (no super-resolution branch).

        Returns:
            Raw head output (B, 3, H/4, W/4, 5 + classes) and None.
        """
        fused, _, _ = self.features(x)
        return self.head(fused), None

    def forward_with_losses(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Run the detector and compute its auxiliary training losses.

        Args:
            x: Image (B, C, H, W); H and W multiples of 16.

        Returns:
            Raw head output and ``{'contrast': contrast_weight * InfoNCE}``
            (empty without the CL module).
        """
        fused, deep_rgb, deep_ir = self.features(x)
        losses: dict[str, Tensor] = {}
        if self.contrast is not None:
            losses['contrast'] = self.contrast_weight * self.contrast(deep_rgb, deep_ir)
        return self.head(fused), losses

    def forward(self, x: Tensor) -> Tensor:
        """Detect objects.

        Args:
            x: Image (B, C, H, W).

        Returns:
            Raw outputs in training mode, decoded predictions in eval mode.
        """
        raw, _ = self.forward_raw(x)
        return raw if self.training else self.detect.decode(raw)

    def fuse(self) -> SeaDATE:
        """Prepare for inference: fold batch norms, drop the contrastive heads.

        Returns:
            This model, in eval mode.
        """
        self.contrast = None
        fuse_model(self)
        return self


def seadate_yolov5s(
    num_classes: int = 1,
    rgb_bands: Sequence[int] = (0, 1, 2),
    ir_bands: Sequence[int] = (3,),
    width: float = 1.0,
    contrast_weight: float = 0.1,
    temperature: float = 0.1,
    dual_attention: bool = True,
) -> SeaDATE:
    """SeaDATE on two YOLOv5s-width streams: DTF at strides 4 and 8, CL at 16.

    Args:
        num_classes: Number of object classes.
        rgb_bands: Indices of the RGB bands in the input.
        ir_bands: Indices of the infrared band(s).
        width: Channel multiplier (see :class:`SeaDATE`).
        contrast_weight: Weight of the contrastive loss (0: without the CL
            module, an ablation).
        temperature: InfoNCE temperature.
        dual_attention: Fuse the shallow stages with DTF (False: addition, an
            ablation).

    Returns:
        The model.
    """
    return SeaDATE(
        num_classes,
        rgb_bands,
        ir_bands,
        width,
        dual_attention=dual_attention,
        contrast_weight=contrast_weight,
        temperature=temperature,
    )


def two_stream_yolov5s(
    num_classes: int = 1,
    rgb_bands: Sequence[int] = (0, 1, 2),
    ir_bands: Sequence[int] = (3,),
    width: float = 1.0,
) -> SeaDATE:
    """The plain two-stream baseline: SeaDATE's network without DTF and CL.

    Shallow stages are fused by addition, the deep stage by concatenation and
    a 1 x 1 convolution; no auxiliary loss.

    Args:
        num_classes: Number of object classes.
        rgb_bands: Indices of the RGB bands in the input.
        ir_bands: Indices of the infrared band(s).
        width: Channel multiplier (see :class:`SeaDATE`).

    Returns:
        The model.
    """
    return SeaDATE(
        num_classes, rgb_bands, ir_bands, width, dual_attention=False, contrast_weight=0
    )
