"""SuperYOLO: super-resolution assisted multimodal small-object detection."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import BinaryIO, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    Conv2dNormActivation,
    SqueezeExcitation,
    batched_nms,
    box_convert,
)

from .yolo_layers import C3, SPP, Conv, fuse_model, top_candidates

#: The paper's anchors (width, height in input pixels) of the stride-4 head.
ANCHORS: tuple[tuple[float, float], ...] = ((10, 13), (16, 30), (33, 23))

#: VEDAI band groups: RGB bands 0-2, near-infrared band 3.
RGB_IR_BANDS: tuple[tuple[int, ...], ...] = ((0, 1, 2), (3,))


class ModalityPath(nn.Module):
    """One modality's path of the MF block.

    ``y = conv3x3((x / 2) * mask(x / 2) + x)`` where ``mask`` is a 1x1
    convolution (with bias) to one channel, broadcast over the modality's
    bands. No batch norm and no activation, as in the paper.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        """Initialise a new ModalityPath.

        Args:
            in_channels: Bands of this modality.
            out_channels: Output channels.
        """
        super().__init__()
        self.mask = nn.Conv2d(in_channels, 1, 1, bias=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """Weight the modality by its learnt mask and project it.

        Args:
            x: Modality bands (B, C, H, W).

        Returns:
            Features (B, out_channels, H, W).
        """
        half = x * 0.5
        return self.conv(half * self.mask(half) + x)


class MultimodalFusion(nn.Module):
    """The MF block: one :class:`ModalityPath` per band group, concatenated, SE gate."""

    def __init__(
        self, band_groups: Sequence[Sequence[int]], out_channels: int = 64
    ) -> None:
        """Initialise a new MultimodalFusion.

        Output channels are split between modalities in proportion to their
        band counts (RGB+IR: 48 + 16), so one group of ``n`` bands is a plain
        early fusion.

        Args:
            band_groups: Band indices of the input image for each modality.
            out_channels: Channels after concatenation.

        Raises:
            ValueError: If no band group is given or one is empty.
        """
        super().__init__()
        if not band_groups or any(len(g) == 0 for g in band_groups):
            raise ValueError('band_groups must be a non-empty list of non-empty lists')
        self.band_groups = [list(map(int, g)) for g in band_groups]
        total = sum(len(g) for g in self.band_groups)
        widths = [out_channels * len(g) // total for g in self.band_groups]
        widths[0] += out_channels - sum(widths)
        self.paths = nn.ModuleList(
            ModalityPath(len(g), w) for g, w in zip(self.band_groups, widths)
        )
        # Channel attention (Hu et al.): pool, bottleneck (reduction 16), sigmoid gate.
        self.se = SqueezeExcitation(out_channels, max(out_channels // 16, 1))
        self.out_channels = out_channels

    @property
    def bands(self) -> list[int]:
        """Band indices of the input used by the model, in group order."""
        return [b for g in self.band_groups for b in g]

    def forward(self, x: Tensor) -> Tensor:
        """Fuse the modalities of a stacked image.

        Args:
            x: Image (B, C, H, W) holding every band of ``band_groups``.

        Returns:
            Fused features (B, out_channels, H, W).
        """
        feats = [path(x[:, group]) for path, group in zip(self.paths, self.band_groups)]
        return self.se(torch.cat(feats, dim=1))


def _per_band_paths(
    stem: MultimodalFusion, like: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int]]:
    """The MF block's paths seen band by band, for :func:`stem_and_first_conv`.

    Args:
        stem: The MF block.
        like: A tensor of the device and type to build on.

    Returns:
        The masks as a 1 x 1 convolution (one output per group, weight and
        bias, folded with the residual: ``x * (mask'(x) + 1)``), the paths'
        3 x 3 convolutions as one block-diagonal kernel (weight and bias),
        and the group of each band.
    """
    num_bands, channels = len(stem.bands), stem.out_channels
    mask_w = like.new_zeros(len(stem.paths), num_bands, 1, 1)
    mask_b = like.new_zeros(len(stem.paths))
    path_w = like.new_zeros(channels, num_bands, 3, 3)
    path_b = like.new_zeros(channels)
    group_of_band: list[int] = []
    band = first = 0
    for g, path in enumerate(stem.paths):
        assert isinstance(path, ModalityPath)
        n, m = path.conv.in_channels, path.conv.out_channels
        # half * mask(half) + x == x * (mask'(x) + 1), mask' = 0.5 * mask(0.5 * x)
        mask_w[g, band : band + n] = 0.25 * path.mask.weight[0]
        mask_b[g] = 0.5 * cast(Tensor, path.mask.bias)[0] + 1
        path_w[first : first + m, band : band + n] = path.conv.weight
        path_b[first : first + m] = cast(Tensor, path.conv.bias)
        group_of_band += [g] * n
        band, first = band + n, first + m
    return mask_w, mask_b, path_w, path_b, group_of_band


def _stem_mean(z: Tensor, path_w: Tensor, path_b: Tensor) -> Tensor:
    """Spatial mean of the stem features ``path_w * z + path_b`` (zero-padded), unformed.

    Computed from the row and column sums of ``z`` each kernel tap sees, in at
    least float32 (sums over a whole image overflow float16).

    Args:
        z: The masked bands (B, bands, H, W).
        path_w: The paths' block-diagonal 3 x 3 kernel.
        path_b: Its bias.

    Returns:
        The mean per image and channel (B, C), in the type of ``z``.
    """
    height, width = z.shape[-2:]
    wide = z if z.dtype == torch.float64 else z.float()
    rows = wide.sum(-1)  # (B, bands, H)
    cols_seen = torch.stack((rows - wide[..., -1], rows, rows - wide[..., 0]), -1)
    total = cols_seen.sum(2)  # (B, bands, 3): kernel column
    seen = torch.stack(
        (total - cols_seen[:, :, -1], total, total - cols_seen[:, :, 0]), 2
    )
    taps = torch.einsum('ciab,niab->nc', path_w.to(seen.dtype), seen)
    return path_b + (taps / (height * width)).to(z.dtype)


def stem_and_first_conv(stem: MultimodalFusion, conv: nn.Module, x: Tensor) -> Tensor:
    """``conv(stem(x))`` for inference, as one 5 x 5 stride-2 convolution per image.

    From the input to the first backbone convolution everything is linear once
    the modality masks have weighted the bands: the masks act pixel by pixel on
    the few input bands (computed first), the paths' 3 x 3 convolutions are
    linear and the squeeze-and-excitation gate is one scale per image and
    channel. So the paths' convolutions (3 x 3, stride 1), the gate and the
    backbone convolution (3 x 3, stride 2) compose into one 5 x 5 stride-2
    kernel, and the full-resolution stem features (64 channels) are never
    formed: at 512 x 512 this skips 2.7 of SuperYOLO's 17.9 GMACs, the
    concatenation of the paths and the gate's multiply. Two details keep it
    exact (up to float rounding):

    * the gate needs the spatial mean of the stem features: the mean of a
      zero-padded stride-1 convolution is its kernel applied to the sums of
      its input over the rows and columns each kernel tap sees;
    * the backbone convolution zero-pads the stem features, where the composed
      kernel would see them continued past the edge: the first output row
      and column are recomputed from thin strips.

    Args:
        stem: The MF block.
        conv: The first backbone convolution, batch norm fused (a
            :class:`~torchgeo_ext.models.yolo_layers.Conv` after ``fuse`` or
            a :class:`~torchgeo_ext.models.superyolo_engine.ConvAct`): 3 x 3,
            stride 2, padding 1.
        x: Image (B, C, H, W), H and W even.

    Returns:
        The first backbone convolution's output (B, C', H / 2, W / 2), in the
        memory format of that convolution's weights.
    """
    layer, act = conv.conv, conv.act
    assert isinstance(layer, nn.Conv2d)
    assert isinstance(act, nn.Module)
    weight, bias = layer.weight, layer.bias
    assert bias is not None
    mask_w, mask_b, path_w, path_b, group_of_band = _per_band_paths(stem, weight)
    xs = x[:, stem.bands]
    z = xs * F.conv2d(xs, mask_w, mask_b)[:, group_of_band]
    channels_last = weight.is_contiguous(memory_format=torch.channels_last)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    mean = _stem_mean(z, path_w, path_b)
    se = stem.se
    scale = se.scale_activation(se.fc2(se.activation(se.fc1(mean[..., None, None]))))
    # Compose: K = (weight * scale) (x) path_w, a full 2-D convolution of the kernels.
    b = z.shape[0]
    scaled = (weight[None] * scale[:, None, :]).flatten(0, 1)  # (B * C', C, 3, 3)
    kernels = F.conv_transpose2d(scaled, path_w).contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    biases = bias + (scale.flatten(1) * path_b) @ weight.sum((2, 3)).T
    step = len(weight)
    outs = [
        F.conv2d(z[i : i + 1], kernels[i * step : (i + 1) * step], biases[i], 2, 2)
        for i in range(b)
    ]
    y = outs[0] if b == 1 else torch.cat(outs)
    # The first row and column: the stem features zero-padded, as in the model.
    top = F.conv2d(z[:, :, :3], path_w, path_b, padding=1)[:, :, :2] * scale
    left = F.conv2d(z[..., :3], path_w, path_b, padding=1)[..., :2] * scale
    y[:, :, :1] = F.conv2d(top, weight, bias, stride=2, padding=1)
    y[..., :1] = F.conv2d(left, weight, bias, stride=2, padding=1)
    if isinstance(act, nn.SiLU):
        return F.silu(y, inplace=True)
    out: Tensor = act(y)
    return out


class Detect(nn.Module):
    """Single-level YOLOv5 detection head (anchor-based)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        anchors: Sequence[Sequence[float]] = ANCHORS,
        stride: int = 4,
    ) -> None:
        """Initialise a new Detect head.

        Args:
            num_classes: Number of object classes.
            in_channels: Input feature channels.
            anchors: Anchor (width, height) pairs in input pixels.
            stride: Stride of the input features.
        """
        super().__init__()
        self.num_classes = num_classes
        self.num_outputs = num_classes + 5
        self.num_anchors = len(anchors)
        self.stride = stride
        self.anchors: Tensor
        self.register_buffer(
            'anchors', torch.tensor(anchors, dtype=torch.float32).view(-1, 2)
        )
        self.conv = nn.Conv2d(in_channels, self.num_anchors * self.num_outputs, 1)
        self.reset_bias()

    @torch.no_grad()
    def reset_bias(self, image_size: int = 512) -> None:
        """Initialise objectness and class biases (YOLOv5 prior: ~8 objects/image).

        Args:
            image_size: Typical input size.
        """
        bias = self.conv.bias.view(self.num_anchors, self.num_outputs)  # type: ignore[union-attr]
        bias[:, 4] += torch.log(torch.tensor(8 / (image_size / self.stride) ** 2))
        bias[:, 5:] += torch.log(torch.tensor(0.6 / (self.num_classes - 0.99)))

    def forward(self, x: Tensor) -> Tensor:
        """Predict raw outputs.

        Args:
            x: Features (B, C, H, W).

        Returns:
            Raw logits (B, anchors, H, W, 5 + classes): x, y, w, h, objectness,
            class scores.
        """
        b, _, h, w = x.shape
        y = self.conv(x).view(b, self.num_anchors, self.num_outputs, h, w)
        return y.permute(0, 1, 3, 4, 2).contiguous()

    def decode(self, raw: Tensor) -> Tensor:
        """Decode raw outputs into boxes in input pixels.

        Args:
            raw: Output of :meth:`forward` (B, A, H, W, 5 + classes).

        Returns:
            (B, A * H * W, 5 + classes): centre x, centre y, width, height,
            objectness probability, class probabilities.
        """
        b, a, h, w, n = raw.shape
        ys = torch.arange(h, device=raw.device, dtype=raw.dtype)
        xs = torch.arange(w, device=raw.device, dtype=raw.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing='ij')
        grid = torch.stack((gx, gy), dim=-1).view(1, 1, h, w, 2) - 0.5
        y = raw.sigmoid()
        xy = (y[..., :2] * 2 + grid) * self.stride
        wh = (y[..., 2:4] * 2) ** 2 * self.anchors.to(raw.dtype).view(1, a, 1, 1, 2)
        return torch.cat((xy, wh, y[..., 4:]), dim=-1).view(b, a * h * w, n)


class ResBlock(nn.Module):
    """EDSR residual block: conv, ReLU, conv, scaled residual (no batch norm)."""

    def __init__(self, channels: int, scale: float = 1.0) -> None:
        """Initialise a new ResBlock.

        Args:
            channels: Channels.
            scale: Residual scaling.
        """
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: Features (B, C, H, W).

        Returns:
            Features (B, C, H, W).
        """
        return x + self.scale * self.conv2(F.relu(self.conv1(x)))


class SRBranch(nn.Module):
    """The training-only super-resolution branch.

    Low-level (stride 4, 128 channels) and SPP (stride 16, 512 channels)
    features are reduced to 64 and 256 channels, the deep ones upsampled to
    stride 4, concatenated and decoded by convolutions and an EDSR body; a x8
    pixel-shuffle upsampler then reconstructs the image at twice the input
    resolution.
    """

    def __init__(
        self,
        out_channels: int,
        low_channels: int = 128,
        deep_channels: int = 512,
        features: int = 64,
        num_blocks: int = 16,
    ) -> None:
        """Initialise a new SRBranch.

        Args:
            out_channels: Bands of the reconstructed image.
            low_channels: Channels of the stride-4 features.
            deep_channels: Channels of the SPP features.
            features: EDSR width.
            num_blocks: EDSR residual blocks.
        """
        super().__init__()
        self.low = nn.Sequential(nn.Conv2d(low_channels, 64, 1), nn.ReLU(inplace=True))
        self.deep = nn.Sequential(
            nn.Conv2d(deep_channels, 256, 1), nn.ReLU(inplace=True)
        )
        self.decoder = nn.Sequential(
            Conv2dNormActivation(320, 256, 3),  # conv, BN, ReLU
            Conv2dNormActivation(256, 128, 3),
            Conv2dNormActivation(128, features, 1),
        )
        self.head = nn.Conv2d(features, features, 3, 1, 1)
        self.body = nn.Sequential(
            *(ResBlock(features) for _ in range(num_blocks)),
            nn.Conv2d(features, features, 3, 1, 1),
        )
        upsampler: list[nn.Module] = []
        for _ in range(3):  # 2 ** 3 = 8
            upsampler += [
                nn.Conv2d(features, 4 * features, 3, 1, 1),
                nn.PixelShuffle(2),
            ]
        self.upsample = nn.Sequential(*upsampler)
        self.tail = nn.Conv2d(features, out_channels, 3, 1, 1)

    def forward(self, low: Tensor, deep: Tensor) -> Tensor:
        """Reconstruct the high-resolution image.

        Args:
            low: Stride-4 features (B, 128, H/4, W/4).
            deep: SPP features (B, 512, H/16, W/16).

        Returns:
            Image (B, out_channels, 2H, 2W).
        """
        low = self.low(low)
        deep = F.interpolate(self.deep(deep), size=low.shape[-2:], mode='bilinear')
        x = self.head(self.decoder(torch.cat((low, deep), dim=1)))
        x = x + self.body(x)
        return self.tail(self.upsample(x))


class SuperYOLO(nn.Module):
    """SuperYOLO detector with its optional training-time SR branch.

    In training mode :meth:`forward` returns raw head outputs; in eval mode the
    decoded predictions (see :meth:`Detect.decode`). :meth:`forward_raw`
    returns both the raw outputs and the SR reconstruction.

    The stem is a multimodal fusion block over one or more band groups of the
    stacked input: ``[[0, 1, 2], [3]]`` is the paper's RGB+IR model,
    ``[[0, 1, 2]]`` RGB only, ``[[3]]`` IR only, and ``[list(range(n))]`` a
    plain early fusion of any ``n`` bands (e.g. RGB+NIR user imagery).
    """

    def __init__(
        self,
        num_classes: int = 8,
        band_groups: Sequence[Sequence[int]] = RGB_IR_BANDS,
        super_resolution: bool = True,
        anchors: Sequence[Sequence[float]] = ANCHORS,
        stem_channels: int = 64,
        width: float = 1.0,
    ) -> None:
        """Initialise a new SuperYOLO.

        Args:
            num_classes: Number of object classes.
            band_groups: Input band indices per modality (see above).
            super_resolution: Build the SR branch (training only).
            anchors: Anchor sizes in pixels for the stride-4 head.
            stem_channels: Output channels of the MF stem (64 for the
                multimodal and early-fusion models, 32 for the paper's
                single-modality models).
            width: Channel multiplier of the stem, backbone and neck (1 is
                the paper's model; 0.25 gives a small one, about 16x fewer
                multiply-accumulates, for quick CPU training).
        """
        super().__init__()

        def ch(channels: int) -> int:
            return max(8, round(channels * width / 8) * 8)

        self.num_classes = num_classes
        self.stem = MultimodalFusion(band_groups, ch(stem_channels))
        # Backbone (indices as in the paper's layer table).
        self.b1 = Conv(ch(stem_channels), ch(64), 3, 2)  # /2
        self.b2 = C3(ch(64), ch(64), 1)
        self.b3 = Conv(ch(64), ch(128), 3, 2)  # /4
        self.b4 = C3(ch(128), ch(128), 3)
        self.b5 = Conv(ch(128), ch(256), 3, 2)  # /8
        self.b6 = C3(ch(256), ch(256), 3)
        self.b7 = Conv(ch(256), ch(512), 3, 2)  # /16
        self.b8 = SPP(ch(512), ch(512), (5, 9, 13))
        self.b9 = C3(ch(512), ch(512), 1, shortcut=False)
        # Two-level neck.
        self.h10 = Conv(ch(512), ch(256), 1)
        self.h13 = C3(ch(512), ch(256), 1, shortcut=False)
        self.h14 = Conv(ch(256), ch(128), 1)
        self.h17 = C3(ch(256), ch(128), 1, shortcut=False)
        self.detect = Detect(num_classes, ch(128), anchors, stride=4)
        self.sr: SRBranch | None = (
            SRBranch(len(self.stem.bands), ch(128), ch(512))
            if super_resolution
            else None
        )

    @property
    def bands(self) -> list[int]:
        """Input band indices the model reads (the SR target uses the same)."""
        return self.stem.bands

    def forward_raw(
        self, x: Tensor, with_sr: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Run the detector (and optionally the SR branch).

        Args:
            x: Image (B, C, H, W); H and W multiples of 16.
            with_sr: Also return the SR reconstruction (needs the branch).

        Returns:
            Raw head output (B, 3, H/4, W/4, 5 + classes) and the SR image
            (B, bands, 2H, 2W) or None.
        """
        return self.forward_after_first_conv(self.b1(self.stem(x)), with_sr)

    def forward_after_first_conv(
        self, x: Tensor, with_sr: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Run the detector from the first backbone convolution's output on.

        :meth:`forward_raw` is ``forward_after_first_conv(b1(stem(x)))``; the
        eager inference engine
        (:class:`~torchgeo_ext.models.superyolo_engine.SuperYOLOEagerEngine`)
        computes ``b1(stem(x))`` as one convolution instead.

        Args:
            x: Output of ``b1`` (B, C, H/2, W/2).
            with_sr: Also return the SR reconstruction (needs the branch).

        Returns:
            As :meth:`forward_raw`.
        """
        x = self.b2(x)
        p4 = self.b4(self.b3(x))
        p6 = self.b6(self.b5(p4))
        spp = self.b8(self.b7(p6))
        x = self.b9(spp)
        x10 = self.h10(x)
        x = self.h13(torch.cat((F.interpolate(x10, scale_factor=2.0), p6), dim=1))
        x14 = self.h14(x)
        x = self.h17(torch.cat((F.interpolate(x14, scale_factor=2.0), p4), dim=1))
        raw = self.detect(x)
        sr = self.sr(p4, spp) if with_sr and self.sr is not None else None
        return raw, sr

    def forward(self, x: Tensor) -> Tensor:
        """Detect objects.

        Args:
            x: Image (B, C, H, W).

        Returns:
            Raw outputs in training mode, decoded predictions in eval mode.
        """
        raw, _ = self.forward_raw(x)
        return raw if self.training else self.detect.decode(raw)

    def fuse(self, remove_sr: bool = True) -> SuperYOLO:
        """Prepare for inference: fold batch norms and drop the SR branch.

        Args:
            remove_sr: Delete the SR branch (it is never used at inference).

        Returns:
            This model, in eval mode.
        """
        if remove_sr:
            self.sr = None
        fuse_model(self)
        return self

    @torch.no_grad()
    def predict(
        self,
        x: Tensor,
        score_threshold: float = 0.25,
        iou_threshold: float = 0.45,
        max_detections: int = 300,
    ) -> list[dict[str, Tensor]]:
        """Detect objects and apply non-maximum suppression.

        Args:
            x: Image (B, C, H, W).
            score_threshold: Minimum objectness x class probability.
            iou_threshold: NMS IoU threshold (per class).
            max_detections: Maximum boxes kept per image.

        Returns:
            One dict per image with ``boxes`` (N, 4) xyxy pixels, ``scores``
            (N,) and ``labels`` (N,) int64.
        """
        raw, _ = self.forward_raw(x)
        return postprocess(
            self.detect.decode(raw), score_threshold, iou_threshold, max_detections
        )


def postprocess(
    decoded: Tensor,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    max_candidates: int = 30000,
) -> list[dict[str, Tensor]]:
    """Turn decoded YOLO outputs into per-image boxes with class-wise NMS.

    Args:
        decoded: Output of :meth:`Detect.decode` (B, N, 5 + classes).
        score_threshold: Minimum objectness x class probability.
        iou_threshold: NMS IoU threshold.
        max_detections: Maximum boxes kept per image.
        max_candidates: Maximum boxes entering NMS per image.

    Returns:
        One dict per image with ``boxes`` (N, 4) xyxy, ``scores``, ``labels``.
    """
    results = []
    for pred in decoded:
        cxcywh, scores, labels = top_candidates(
            pred[:, :4], pred[:, 5:] * pred[:, 4:5], score_threshold, max_candidates
        )
        boxes = box_convert(cxcywh, 'cxcywh', 'xyxy')
        idx = batched_nms(boxes.float(), scores.float(), labels, iou_threshold)
        idx = idx[:max_detections]
        results.append(
            {'boxes': boxes[idx], 'scores': scores[idx], 'labels': labels[idx]}
        )
    return results


def superyolo_mf(
    num_classes: int = 8,
    rgb_bands: Sequence[int] = (0, 1, 2),
    ir_bands: Sequence[int] = (3,),
    super_resolution: bool = True,
    width: float = 1.0,
) -> SuperYOLO:
    """SuperYOLO with the MF block over RGB + IR (the paper's model).

    Args:
        num_classes: Number of object classes.
        rgb_bands: Indices of the RGB bands in the input.
        ir_bands: Indices of the infrared band(s).
        super_resolution: Build the training-time SR branch.
        width: Channel multiplier (see :class:`SuperYOLO`).

    Returns:
        The model.
    """
    return SuperYOLO(
        num_classes, [list(rgb_bands), list(ir_bands)], super_resolution, width=width
    )


def superyolo_rgb(
    num_classes: int = 8,
    rgb_bands: Sequence[int] = (0, 1, 2),
    super_resolution: bool = True,
    width: float = 1.0,
) -> SuperYOLO:
    """SuperYOLO on the RGB bands only.

    Args:
        num_classes: Number of object classes.
        rgb_bands: Indices of the RGB bands in the input.
        super_resolution: Build the training-time SR branch.
        width: Channel multiplier (see :class:`SuperYOLO`).

    Returns:
        The model.
    """
    return SuperYOLO(
        num_classes, [list(rgb_bands)], super_resolution, stem_channels=32, width=width
    )


def superyolo_ir(
    num_classes: int = 8,
    ir_bands: Sequence[int] = (3,),
    super_resolution: bool = True,
    width: float = 1.0,
) -> SuperYOLO:
    """SuperYOLO on the infrared band(s) only.

    Args:
        num_classes: Number of object classes.
        ir_bands: Indices of the infrared band(s) in the input.
        super_resolution: Build the training-time SR branch.
        width: Channel multiplier (see :class:`SuperYOLO`).

    Returns:
        The model.
    """
    return SuperYOLO(
        num_classes, [list(ir_bands)], super_resolution, stem_channels=32, width=width
    )


def superyolo_early(
    num_classes: int = 8,
    in_channels: int = 4,
    super_resolution: bool = True,
    width: float = 1.0,
) -> SuperYOLO:
    """SuperYOLO with plain early fusion of all ``in_channels`` bands.

    Args:
        num_classes: Number of object classes.
        in_channels: Number of input bands (any, e.g. 4 for RGB+NIR).
        super_resolution: Build the training-time SR branch.
        width: Channel multiplier (see :class:`SuperYOLO`).

    Returns:
        The model.
    """
    return SuperYOLO(
        num_classes, [list(range(in_channels))], super_resolution, width=width
    )


def export_onnx(
    model: SuperYOLO,
    path: str | os.PathLike[str] | BinaryIO,
    image_size: int = 512,
    in_channels: int | None = None,
    opset: int = 17,
) -> None:
    """Export the inference model (decoded outputs, before NMS) to ONNX.

    The one ONNX export of SuperYOLO (``detect --engine onnxruntime`` runs
    it too). The model is copied, fused and its SR branch dropped; the
    exported graph maps ``image`` (B, C, H, W) to ``predictions``
    (B, N, 5 + classes), with batch, height and width dynamic.

    Args:
        model: A SuperYOLO (not modified).
        path: Output ``.onnx`` file, or a binary file object.
        image_size: Height and width of the example input.
        in_channels: Input bands (default: highest band index used + 1).
        opset: ONNX opset version.
    """
    import copy
    import warnings

    inference = copy.deepcopy(model).cpu().fuse()
    channels = in_channels if in_channels is not None else max(model.bands) + 1
    example = torch.zeros(1, channels, image_size, image_size)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated but needs no extra package.
        warnings.simplefilter('ignore')
        torch.onnx.export(
            inference,
            (example,),
            # a file object works too
            path if not isinstance(path, str | os.PathLike) else os.fspath(path),  # type: ignore[arg-type]
            input_names=['image'],
            output_names=['predictions'],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={
                'image': {0: 'batch', 2: 'height', 3: 'width'},
                'predictions': {0: 'batch', 1: 'boxes'},
            },
        )
