"""FoRA / LMA: low-rank modal adaptors for RGB-IR oriented object detection."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .obb_detector import OBBHead, OBBOutput, YOLOv8Backbone, YOLOv8Neck, pad_to_stride
from .yolo_layers import Conv

__all__ = [
    'LMADetector',
    'ModalBatchNorm2d',
    'ModalConv2d',
    'RankAllocator',
    'SharedBackbone',
    'TwoStreamOBBDetector',
    'lma_yolov8n_obb',
    'modality_layout',
    'parameter_table',
    'rank_budget',
    'set_modality',
    'split_modalities',
    'two_stream_yolov8n_obb',
]

#: DroneVehicle's band layout: RGB bands 0-2 and IR band 3.
DEFAULT_MODALITIES: dict[str, list[int]] = {'rgb': [0, 1, 2], 'ir': [3]}


class ModalConv2d(nn.Module):
    """Convolution with a shared weight and per-modality low-rank adaptors."""

    rank_mask: Tensor

    def __init__(
        self,
        conv: nn.Conv2d,
        num_modalities: int = 2,
        rank: int = 9,
        alpha: float | None = None,
    ) -> None:
        """Initialise a new ModalConv2d from an existing convolution.

        Args:
            conv: The convolution whose weight becomes the shared ``W0``
                (copied; groups must be 1, no bias).
            num_modalities: Number of modalities.
            rank: Initial rank ``r``.
            alpha: Scaling numerator; ``s = alpha / r`` (default ``r``: s = 1).

        Raises:
            ValueError: For grouped convolutions or convolutions with bias.
        """
        super().__init__()
        if conv.groups != 1 or conv.bias is not None:
            raise ValueError('ModalConv2d supports ungrouped convolutions without bias')
        c_out, c_in, kh, kw = conv.weight.shape
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation
        self.rank = rank
        self.scaling = (alpha if alpha is not None else rank) / rank
        self.weight = nn.Parameter(conv.weight.detach().clone())
        self.lora_A = nn.ParameterList(
            nn.Parameter(torch.randn(rank, c_in * kw) * 0.02)
            for _ in range(num_modalities)
        )
        self.lora_B = nn.ParameterList(
            nn.Parameter(torch.randn(c_out * kh, rank) * 0.02)
            for _ in range(num_modalities)
        )
        self.lora_E = nn.Parameter(torch.zeros(rank))
        self.register_buffer('rank_mask', torch.ones(rank))
        #: Index of the modality used by :meth:`forward`.
        self.modality = 0
        self._cache: dict[int, tuple[Any, Tensor]] = {}

    def delta(self, modality: int) -> Tensor:
        """The adaptor's weight update for a modality.

        Args:
            modality: Modality index.

        Returns:
            ``s * B_m diag(E * mask) A_m`` reshaped like the weight.
        """
        e = self.lora_E * self.rank_mask
        update = self.lora_B[modality] @ (e[:, None] * self.lora_A[modality])
        return (update * self.scaling).reshape(self.weight.shape)

    def modal_weight(self, modality: int) -> Tensor:
        """The effective weight of a modality.

        Args:
            modality: Modality index.

        Returns:
            ``W0 + delta``.
        """
        return self.weight + self.delta(modality)

    def _weight_for_forward(self) -> Tensor:
        """The current modality's weight, cached while gradients are off.

        Without autograd (inference), the merged weight is reused until any of
        its inputs changes (tracked by tensor identity and version counters).
        """
        m = self.modality
        if torch.is_grad_enabled():
            return self.modal_weight(m)
        sources = (
            self.weight,
            self.lora_A[m],
            self.lora_B[m],
            self.lora_E,
            self.rank_mask,
        )
        key = (m, *((t.data_ptr(), t._version) for t in sources))
        cached = self._cache.get(m)
        if cached is None or cached[0] != key:
            cached = (key, self.modal_weight(m))
            self._cache[m] = cached
        return cached[1]

    def forward(self, x: Tensor) -> Tensor:
        """Convolve with the current modality's weight.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H', W').
        """
        return F.conv2d(
            x,
            self._weight_for_forward(),
            None,
            self.stride,
            self.padding,  # type: ignore[arg-type]
            self.dilation,
        )

    def active_rank(self) -> int:
        """Number of ranks not masked.

        Returns:
            The rank in use.
        """
        return int(self.rank_mask.sum())


class ModalBatchNorm2d(nn.Module):
    """One batch norm per modality."""

    def __init__(self, bn: nn.BatchNorm2d, num_modalities: int = 2) -> None:
        """Initialise a new ModalBatchNorm2d.

        Args:
            bn: The batch norm to copy for each modality.
            num_modalities: Number of modalities.
        """
        super().__init__()
        self.norms = nn.ModuleList(
            nn.BatchNorm2d(bn.num_features, bn.eps, bn.momentum)
            for _ in range(num_modalities)
        )
        self.modality = 0

    def forward(self, x: Tensor) -> Tensor:
        """Normalise with the current modality's statistics.

        Args:
            x: Input (B, C, H, W).

        Returns:
            Normalised input.
        """
        norm: nn.Module = self.norms[self.modality]
        out: Tensor = norm(x)
        return out


def set_modality(module: nn.Module, modality: int) -> None:
    """Switch every modal layer in a module to a modality.

    Args:
        module: A module containing :class:`ModalConv2d` / :class:`ModalBatchNorm2d`.
        modality: Modality index.
    """
    for m in module.modules():
        if isinstance(m, ModalConv2d | ModalBatchNorm2d):
            m.modality = modality


def modality_layout(
    modalities: Mapping[str, Sequence[int]] | None,
) -> dict[str, list[int]]:
    """A band layout as a plain dict of lists (default: RGB bands 0-2, IR band 3).

    Args:
        modalities: Band indices of each modality, or None.

    Returns:
        Modality name -> band indices, in the order given.
    """
    return {k: list(v) for k, v in (modalities or DEFAULT_MODALITIES).items()}


def split_modalities(
    x: Tensor, modalities: Mapping[str, Sequence[int]], channels: int | None = None
) -> list[Tensor]:
    """Split a stacked image into its modalities.

    Args:
        x: Image (B, C, H, W).
        modalities: Band indices of each modality, in order.
        channels: If given, single-band modalities are repeated to this many
            channels (IR fed to a 3-channel stem).

    Returns:
        One tensor per modality.
    """
    out = []
    for bands in modalities.values():
        part = x[:, list(bands)]
        if channels is not None and part.shape[1] == 1 and channels > 1:
            part = part.expand(-1, channels, -1, -1)
        out.append(part)
    return out


class SharedBackbone(nn.Module):
    """YOLOv8 backbone shared across modalities through low-rank modal adaptors."""

    def __init__(
        self,
        num_modalities: int = 2,
        in_channels: int = 3,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        rank: int = 9,
        alpha: float | None = None,
    ) -> None:
        """Initialise a new SharedBackbone.

        Args:
            num_modalities: Number of modalities.
            in_channels: Channels of the shared stem (inputs with one band are
                repeated to this).
            width: Width multiple.
            depth: Depth multiple.
            max_channels: Channel cap.
            rank: Initial adaptor rank.
            alpha: Adaptor scaling numerator (default ``rank``).
        """
        super().__init__()
        self.num_modalities = num_modalities
        self.in_channels = in_channels
        self.body = YOLOv8Backbone(in_channels, width, depth, max_channels)
        for module in list(self.body.modules()):
            if isinstance(module, Conv):
                assert isinstance(module.conv, nn.Conv2d)
                assert isinstance(module.bn, nn.BatchNorm2d)
                module.conv = ModalConv2d(module.conv, num_modalities, rank, alpha)  # type: ignore[assignment]
                module.bn = ModalBatchNorm2d(module.bn, num_modalities)
        self.channels = self.body.channels

    def adaptors(self) -> Iterator[tuple[str, ModalConv2d]]:
        """The modal convolutions with their names.

        Yields:
            (name, layer) pairs.
        """
        for name, module in self.named_modules():
            if isinstance(module, ModalConv2d):
                yield name, module

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """Run each modality through the shared backbone and add the features.

        Args:
            inputs: One image per modality (B, in_channels, H, W).

        Returns:
            The summed P2, P3, P4, P5 features.
        """
        fused: list[Tensor] | None = None
        for index, x in enumerate(inputs):
            set_modality(self, index)
            feats = self.body(x)
            fused = (
                feats
                if fused is None
                else [a + b for a, b in zip(fused, feats, strict=True)]
            )
        set_modality(self, 0)
        assert fused is not None
        return fused


class LMADetector(nn.Module):
    """FoRA/LMA: shared adapted backbone, addition at P3-P5, YOLOv8 neck, OBB head."""

    def __init__(
        self,
        num_classes: int = 5,
        modalities: Mapping[str, Sequence[int]] | None = None,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        rank: int = 9,
        alpha: float | None = None,
        reg_max: int = 16,
    ) -> None:
        """Initialise a new LMADetector.

        Args:
            num_classes: Number of classes.
            modalities: Band indices of each modality in the stacked input
                (default RGB 0-2, IR 3).
            width: Width multiple.
            depth: Depth multiple.
            max_channels: Channel cap.
            rank: Initial adaptor rank.
            alpha: Adaptor scaling numerator (default ``rank``).
            reg_max: DFL bins per side.
        """
        super().__init__()
        self.modalities = modality_layout(modalities)
        #: Input bands read, sorted.
        self.bands = sorted(b for v in self.modalities.values() for b in v)
        self.num_classes = num_classes
        self.reg_max = reg_max
        stem = max(len(v) for v in self.modalities.values())
        self.backbone = SharedBackbone(
            len(self.modalities), stem, width, depth, max_channels, rank, alpha
        )
        self.neck = YOLOv8Neck(self.backbone.channels[1:], depth)
        self.head = OBBHead(num_classes, self.neck.channels, reg_max)

    def forward(self, x: Tensor) -> OBBOutput:
        """Detect oriented objects.

        Args:
            x: Stacked image (B, C, H, W) in the ``modalities`` layout.

        Returns:
            Raw head outputs.
        """
        x = pad_to_stride(x)
        inputs = split_modalities(x, self.modalities, self.backbone.in_channels)
        feats = self.backbone(inputs)
        return self.head(self.neck(feats[1:]))


class TwoStreamOBBDetector(nn.Module):
    """Baseline: a separate YOLOv8 backbone per modality, addition at P3-P5."""

    def __init__(
        self,
        num_classes: int = 5,
        modalities: Mapping[str, Sequence[int]] | None = None,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        reg_max: int = 16,
    ) -> None:
        """Initialise a new TwoStreamOBBDetector.

        Args:
            num_classes: Number of classes.
            modalities: Band indices of each modality (default RGB 0-2, IR 3).
            width: Width multiple.
            depth: Depth multiple.
            max_channels: Channel cap.
            reg_max: DFL bins per side.
        """
        super().__init__()
        self.modalities = modality_layout(modalities)
        #: Input bands read, sorted.
        self.bands = sorted(b for v in self.modalities.values() for b in v)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.backbones = nn.ModuleDict(
            {
                name: YOLOv8Backbone(len(bands), width, depth, max_channels)
                for name, bands in self.modalities.items()
            }
        )
        first = next(iter(self.backbones.values()))
        assert isinstance(first, YOLOv8Backbone)
        channels = first.channels
        self.neck = YOLOv8Neck(channels[1:], depth)
        self.head = OBBHead(num_classes, self.neck.channels, reg_max)

    def forward(self, x: Tensor) -> OBBOutput:
        """Detect oriented objects.

        Args:
            x: Stacked image (B, C, H, W) in the ``modalities`` layout.

        Returns:
            Raw head outputs.
        """
        x = pad_to_stride(x)
        fused: list[Tensor] | None = None
        for name, part in zip(
            self.modalities, split_modalities(x, self.modalities), strict=True
        ):
            feats = self.backbones[name](part)
            fused = (
                feats
                if fused is None
                else [a + b for a, b in zip(fused, feats, strict=True)]
            )
        assert fused is not None
        return self.head(self.neck(fused[1:]))


def rank_budget(
    step: int,
    total_steps: int,
    init_rank: float = 9,
    target_rank: float = 6,
    start_frac: float = 1 / 6,
    end_frac: float = 1 / 2,
) -> float:
    """Average rank allowed at a training step (cubic schedule).

    Args:
        step: Current step.
        total_steps: Steps of the whole training.
        init_rank: Rank before ``start_frac`` of training.
        target_rank: Rank from ``end_frac`` of training on.
        start_frac: Fraction of training where pruning starts.
        end_frac: Fraction of training where the target is reached.

    Returns:
        ``target + (init - target) * (1 - progress)^3`` between the two points.
    """
    start, end = start_frac * total_steps, end_frac * total_steps
    if step <= start:
        return float(init_rank)
    if step >= end:
        return float(target_rank)
    progress = (step - start) / max(end - start, 1e-12)
    return float(target_rank + (init_rank - target_rank) * (1 - progress) ** 3)


class RankAllocator:
    """AdaLoRA-style adaptive rank allocation over :class:`ModalConv2d` layers.

    Call :meth:`step` after each backward pass (before the optimiser zeroes
    the gradients). Importance of each adaptor entry is
    ``EMA(|p grad|) * EMA(|I - EMA(I)|)`` (``beta1``, ``beta2``); the score of
    rank ``i`` of a layer is the importance of ``E_i`` plus the mean
    importance of row ``i`` of ``A_m`` and column ``i`` of ``B_m`` (averaged
    over modalities). The ``budget * layers`` best ranks over all layers stay
    on; the others are masked and their ``E`` entries set to zero.
    """

    def __init__(
        self,
        model: nn.Module,
        total_steps: int,
        init_rank: int = 9,
        target_rank: float = 6,
        beta1: float = 0.85,
        beta2: float = 0.85,
        start_frac: float = 1 / 6,
        end_frac: float = 1 / 2,
        interval: int = 1,
    ) -> None:
        """Initialise a new RankAllocator.

        Args:
            model: Model holding the adaptors.
            total_steps: Total training steps.
            init_rank: Initial rank of every adaptor.
            target_rank: Final average rank.
            beta1: EMA coefficient of the sensitivity.
            beta2: EMA coefficient of the uncertainty.
            start_frac: Fraction of training where pruning starts.
            end_frac: Fraction where the final budget is reached.
            interval: Re-mask every this many steps.
        """
        self.layers = [
            (n, m) for n, m in model.named_modules() if isinstance(m, ModalConv2d)
        ]
        self.total_steps = total_steps
        self.init_rank = init_rank
        self.target_rank = target_rank
        self.beta1 = beta1
        self.beta2 = beta2
        self.start_frac = start_frac
        self.end_frac = end_frac
        self.interval = interval
        self.ema: dict[int, Tensor] = {}
        self.unc: dict[int, Tensor] = {}

    @torch.no_grad()
    def _importance(self, p: Tensor) -> Tensor:
        key = id(p)
        if p.grad is None:
            return self.ema.get(key, torch.zeros_like(p)) * self.unc.get(
                key, torch.zeros_like(p)
            )
        sens = (p * p.grad).abs()
        if key not in self.ema:
            self.ema[key] = torch.zeros_like(p)
            self.unc[key] = torch.zeros_like(p)
        self.ema[key] = self.beta1 * self.ema[key] + (1 - self.beta1) * sens
        uncertainty = (sens - self.ema[key]).abs()
        self.unc[key] = self.beta2 * self.unc[key] + (1 - self.beta2) * uncertainty
        return self.ema[key] * self.unc[key]

    @torch.no_grad()
    def scores(self) -> list[Tensor]:
        """Update the importance EMAs and return each layer's rank scores.

        Returns:
            One (r,) tensor per layer.
        """
        out = []
        for _, layer in self.layers:
            score = self._importance(layer.lora_E)
            a = torch.stack([self._importance(p).mean(1) for p in layer.lora_A]).mean(0)
            b = torch.stack([self._importance(p).mean(0) for p in layer.lora_B]).mean(0)
            out.append(score + a + b)
        return out

    @torch.no_grad()
    def step(self, global_step: int) -> float:
        """Update importance and mask ranks to the current budget.

        Args:
            global_step: Current training step.

        Returns:
            The current average-rank budget.
        """
        scores = self.scores()
        budget = rank_budget(
            global_step,
            self.total_steps,
            self.init_rank,
            self.target_rank,
            self.start_frac,
            self.end_frac,
        )
        if budget >= self.init_rank or global_step % self.interval:
            return budget
        flat = torch.cat(scores)
        keep = math.floor(budget * len(self.layers))
        keep = max(1, min(keep, flat.numel()))
        threshold = flat.topk(keep).values[-1]
        kept_total = 0
        for (_, layer), score in zip(self.layers, scores, strict=True):
            mask = (score >= threshold).to(layer.rank_mask.dtype)
            # ties at the threshold must not exceed the budget
            while kept_total + int(mask.sum()) > keep and int(mask.sum()) > 0:
                ties = ((score == threshold) & (mask > 0)).nonzero(as_tuple=True)[0]
                if ties.numel() == 0:
                    break
                mask[ties[-1]] = 0
            kept_total += int(mask.sum())
            layer.rank_mask.copy_(mask)
            layer.lora_E.mul_(mask)
        return budget

    def final_ranks(self) -> dict[str, int]:
        """Ranks in use per adaptor layer.

        Returns:
            Layer name to active rank.
        """
        return {name: layer.active_rank() for name, layer in self.layers}


def adaptor_ranks(model: nn.Module) -> dict[str, int]:
    """Active rank of every :class:`ModalConv2d` in a model.

    Args:
        model: The model.

    Returns:
        Layer name to active rank.
    """
    return {
        n: m.active_rank()
        for n, m in model.named_modules()
        if isinstance(m, ModalConv2d)
    }


def _count(module: nn.Module, predicate: str | None = None) -> int:
    return sum(
        p.numel()
        for n, p in module.named_parameters()
        if predicate is None or predicate in n
    )


def parameter_table(models: Mapping[str, nn.Module]) -> str:
    """A Markdown table of parameter counts (total, backbone, adaptors, neck + head).

    Args:
        models: Name to detector (:class:`LMADetector`,
            :class:`TwoStreamOBBDetector` or anything with ``neck``/``head``).

    Returns:
        The table.
    """
    lines = [
        '| model | total | backbone(s) | of which adaptors | neck + head |',
        '| --- | ---: | ---: | ---: | ---: |',
    ]
    for name, model in models.items():
        total = _count(model)
        neck_head = sum(
            _count(m)
            for attr in ('neck', 'head')
            if isinstance(m := getattr(model, attr, None), nn.Module)
        )
        adaptors = _count(model, 'lora_')
        lines.append(
            f'| {name} | {total:,} | {total - neck_head:,} | {adaptors:,} | {neck_head:,} |'
        )
    return '\n'.join(lines)


def lma_yolov8n_obb(
    num_classes: int = 5,
    modalities: Mapping[str, Sequence[int]] | None = None,
    rank: int = 9,
    alpha: float | None = None,
    width: float = 0.25,
    depth: float = 0.33,
) -> LMADetector:
    """FoRA/LMA on YOLOv8n-OBB (depth 0.33, width 0.25), initial rank 9.

    Args:
        num_classes: Number of classes.
        modalities: Band layout (default RGB 0-2, IR 3).
        rank: Initial adaptor rank.
        alpha: Adaptor scaling numerator (default ``rank``).
        width: Width multiple (other values: smaller or larger YOLOv8 sizes).
        depth: Depth multiple.

    Returns:
        The detector.
    """
    return LMADetector(num_classes, modalities, width, depth, 1024, rank, alpha)


def two_stream_yolov8n_obb(
    num_classes: int = 5,
    modalities: Mapping[str, Sequence[int]] | None = None,
    width: float = 0.25,
    depth: float = 0.33,
) -> TwoStreamOBBDetector:
    """The two-stream YOLOv8n-OBB baseline (separate backbones, addition).

    Args:
        num_classes: Number of classes.
        modalities: Band layout (default RGB 0-2, IR 3).
        width: Width multiple (other values: smaller or larger YOLOv8 sizes).
        depth: Depth multiple.

    Returns:
        The detector.
    """
    return TwoStreamOBBDetector(num_classes, modalities, width, depth, 1024)
