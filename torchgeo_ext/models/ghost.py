"""GHOST: guided hybrid quantisation with one-to-one self-teaching."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .complexity import count_macs
from .yolo_layers import Conv

#: SuperYOLO layers whose outputs are taught one to one (backbone and neck).
SELF_TEACHING_LAYERS: tuple[str, ...] = (
    'b1',
    'b2',
    'b3',
    'b4',
    'b5',
    'b6',
    'b7',
    'b8',
    'b9',
    'h10',
    'h13',
    'h14',
    'h17',
)


def round_ste(x: Tensor) -> Tensor:
    """Round with a straight-through gradient (identity in the backward pass).

    Args:
        x: Input.

    Returns:
        ``round(x)`` whose gradient with respect to ``x`` is 1.
    """
    return x + (torch.round(x) - x).detach()


def quantize_weight(w: Tensor, bits: int) -> Tensor:
    """DoReFa weight quantisation to ``bits`` bits, in [-1, 1].

    ``w~ = tanh(w) / (2 max|tanh w|) + 1/2``,
    ``w_q = 2 round(w~ (2^k - 1)) / (2^k - 1) - 1``, rounding with STE.

    Args:
        w: Full-precision weights.
        bits: Bit width (32 or more returns ``w`` unchanged).

    Returns:
        Fake-quantised weights (same shape) taking ``2**bits`` values.
    """
    if bits >= 32:
        return w
    levels = 2**bits - 1
    t = torch.tanh(w)
    scaled = t / (2 * t.abs().max().clamp(min=1e-12)) + 0.5
    return 2 * round_ste(scaled * levels) / levels - 1


def quantize_activation(x: Tensor, bits: int) -> Tensor:
    """DoReFa activation quantisation: ``round(clamp(x, 0, 1) (2^k - 1)) / (2^k - 1)``.

    Args:
        x: Activations.
        bits: Bit width (32 or more returns ``x`` unchanged).

    Returns:
        Fake-quantised activations in [0, 1], STE gradient inside [0, 1].
    """
    if bits >= 32:
        return x
    levels = 2**bits - 1
    return round_ste(x.clamp(0, 1) * levels) / levels


def kmeans_1d(values: Tensor, k: int, iterations: int = 30) -> tuple[Tensor, float]:
    """1-D k-means (Lloyd) with quantile initialisation.

    Assignment uses the sorted centres' midpoints (``searchsorted``), so each
    iteration costs O(N log k).

    Args:
        values: Values (N,).
        k: Number of centres.
        iterations: Maximum Lloyd iterations.

    Returns:
        The centres (k,) and the inertia (sum of squared distances).
    """
    x = values.detach().flatten().double()
    k = min(k, x.numel())
    centres = torch.quantile(x, torch.linspace(0, 1, k, dtype=x.dtype, device=x.device))
    for _ in range(iterations):
        centres, _ = centres.sort()
        bounds = (centres[1:] + centres[:-1]) / 2
        assign = torch.searchsorted(bounds, x)
        sums = x.new_zeros(k).index_add_(0, assign, x)
        counts = x.new_zeros(k).index_add_(0, assign, torch.ones_like(x))
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        if torch.allclose(new, centres, rtol=0, atol=1e-12):
            centres = new
            break
        centres = new
    centres, _ = centres.sort()
    bounds = (centres[1:] + centres[:-1]) / 2
    inertia = float(((x - centres[torch.searchsorted(bounds, x)]) ** 2).sum())
    return centres.float(), inertia


def allocate_bits(
    weight: Tensor,
    threshold: float = 0.1,
    min_bits: int = 2,
    max_bits: int = 8,
    max_samples: int = 16384,
    seed: int = 0,
) -> int:
    """Choose a layer's bit width by k-means on its weights (hybrid quantisation).

    Picks the smallest ``n`` in ``min_bits..max_bits`` with
    ``(inertia / N) * 1e6 < threshold`` for k-means with ``2**n`` centres;
    ``max_bits`` if none qualifies. The k-means error decreases with the
    number of centres, so the smallest width is found by binary search. Large
    layers are subsampled (the criterion is a mean, so a random subsample
    estimates it).

    Args:
        weight: The layer's weights.
        threshold: Criterion threshold.
        min_bits: Smallest bit width.
        max_bits: Largest bit width.
        max_samples: Maximum number of weights clustered.
        seed: Seed of the subsample.

    Returns:
        The bit width.
    """
    x = weight.detach().flatten().float().cpu()
    if x.numel() > max_samples:
        generator = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.numel(), generator=generator)[:max_samples]]

    def fits(bits: int) -> bool:
        _, inertia = kmeans_1d(x, 2**bits)
        return inertia / x.numel() * 1e6 < threshold

    # The k-means error falls as k grows: binary search for the smallest fit.
    low, high = min_bits, max_bits
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    return low


class _BitWidth(nn.Module):
    """A bit width kept twice: a buffer (saved in the state dict) and a Python int.

    ``forward`` uses the int, so that it also runs on the meta device; loading
    a state dict updates both.
    """

    bits: Tensor

    def _set_bits(self, bits: int) -> None:
        self.register_buffer('bits', torch.tensor(bits, dtype=torch.int64))
        self.num_bits = bits

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        key = prefix + 'bits'
        if key in state_dict:
            self.num_bits = int(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class QuantConv2d(_BitWidth, nn.Conv2d):
    """A Conv2d whose weights are DoReFa fake-quantised in every forward pass.

    The bit width is a buffer, so it travels with the state dict.
    """

    def __init__(self, *args: int, bits: int = 8, **kwargs: object) -> None:
        """Initialise a new QuantConv2d.

        Args:
            *args: ``nn.Conv2d`` positional arguments.
            bits: Weight bit width.
            **kwargs: ``nn.Conv2d`` keyword arguments.
        """
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._set_bits(bits)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, bits: int) -> QuantConv2d:
        """Wrap an existing convolution, keeping its weights.

        Args:
            conv: The convolution.
            bits: Weight bit width.

        Returns:
            The quantised convolution.
        """
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
            groups=conv.groups,
            bias=conv.bias is not None,
            bits=bits,
        ).to(conv.weight.device)
        with torch.no_grad():
            q.weight.copy_(conv.weight)
            if conv.bias is not None and q.bias is not None:
                q.bias.copy_(conv.bias)
        return q

    def forward(self, x: Tensor) -> Tensor:
        """Convolve with the quantised weights.

        Args:
            x: Input.

        Returns:
            Output.
        """
        w = quantize_weight(self.weight, self.num_bits)
        return self._conv_forward(x, w, self.bias)


class QuantAct(_BitWidth):
    """An activation followed by DoReFa activation quantisation."""

    def __init__(self, act: nn.Module, bits: int = 8) -> None:
        """Initialise a new QuantAct.

        Args:
            act: The activation (SiLU, ReLU, ...).
            bits: Activation bit width.
        """
        super().__init__()
        self.act = act
        self._set_bits(bits)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the activation and quantise.

        Args:
            x: Input.

        Returns:
            Quantised activations.
        """
        return quantize_activation(self.act(x), self.num_bits)


def quantize_superyolo(
    model: nn.Module,
    fixed_bits: int | None = None,
    activation_bits: int | None = None,
    threshold: float = 0.1,
    bit_widths: dict[str, int] | None = None,
    max_samples: int = 16384,
) -> dict[str, int]:
    """Replace every YOLO :class:`Conv`'s convolution and activation by quantised ones.

    Args:
        model: A SuperYOLO (modified in place). Its SR branch, MF stem and
            detection head stay in full precision.
        fixed_bits: One bit width for all layers instead of k-means.
        activation_bits: Activation bit width (default: the layer's weight bits).
        threshold: k-means criterion threshold (:func:`allocate_bits`).
        bit_widths: Known weight bit widths by layer name (as returned by an
            earlier call); layers not listed are allocated by k-means.
        max_samples: Weights subsampled per layer for k-means.

    Returns:
        Weight bit width per quantised convolution (qualified name).
    """
    bits_by_layer: dict[str, int] = {}
    for name, module in list(model.named_modules()):
        if not isinstance(module, Conv) or name.startswith('sr'):
            continue
        conv = module.conv
        if isinstance(conv, QuantConv2d):
            bits_by_layer[f'{name}.conv'] = conv.num_bits
            continue
        key = f'{name}.conv'
        if bit_widths is not None and key in bit_widths:
            bits = int(bit_widths[key])
        elif fixed_bits is not None:
            bits = fixed_bits
        else:
            bits = allocate_bits(conv.weight, threshold, max_samples=max_samples)
        module.conv = QuantConv2d.from_conv(conv, bits)
        module.act = QuantAct(module.act, activation_bits or bits)
        bits_by_layer[f'{name}.conv'] = bits
    return bits_by_layer


def gumbel_sigmoid(logits: Tensor, tau: float = 1.0, training: bool = True) -> Tensor:
    """Hard Gumbel-sigmoid at 0.5 with a straight-through gradient.

    Args:
        logits: Gate logits.
        tau: Temperature.
        training: Add Gumbel noise (otherwise deterministic).

    Returns:
        Binary gates (0 or 1) whose gradient is that of the soft sigmoid.
    """
    if training:
        u1 = torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)
        u2 = torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)
        logits = logits - torch.log(-torch.log(u1)) + torch.log(-torch.log(u2))
    soft = torch.sigmoid(logits / tau)
    hard = (soft > 0.5).to(soft.dtype)
    return hard + soft - soft.detach()


def attention_map(f: Tensor) -> Tensor:
    """L2-normalised spatial attention: the channel mean of ``f**2``, flattened.

    Args:
        f: Features (B, C, H, W).

    Returns:
        (B, H * W), unit L2 norm per sample.
    """
    return F.normalize(f.pow(2).mean(dim=1).flatten(1), dim=1)


class SwitchGate(nn.Module):
    """The switch control machine of one layer.

    ``q = BN(Linear(GAP(teacher)))``, ``k = ReLU(BN(Linear(GAP(student))))``,
    gate = hard Gumbel-sigmoid of ``k . q / sqrt(d)``.
    """

    def __init__(self, channels: int, dim: int = 128) -> None:
        """Initialise a new SwitchGate.

        Args:
            channels: Channels of the layer output.
            dim: Embedding width.
        """
        super().__init__()
        self.query = nn.Sequential(nn.Linear(channels, dim), nn.BatchNorm1d(dim))
        self.key = nn.Sequential(
            nn.Linear(channels, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True)
        )
        self.dim = dim

    def logits(self, student: Tensor, teacher: Tensor) -> Tensor:
        """Gate logits per sample.

        Args:
            student: Student features (B, C, H, W).
            teacher: Teacher features (B, C, H, W).

        Returns:
            Logits (B,).
        """
        q = self.query(teacher.mean(dim=(2, 3)))
        k = self.key(student.mean(dim=(2, 3)))
        return (k * q).sum(dim=1) / math.sqrt(self.dim)


class OneToOneSelfTeaching(nn.Module):
    """The OST loss over matching student/teacher layers.

    ``L = sum_l mean_b(g_lb * mean((v_s - v_t)^2))`` with ``v`` the
    :func:`attention_map` and ``g`` the layer's :class:`SwitchGate`.
    """

    def __init__(
        self, channels: Sequence[int], dim: int = 128, tau: float = 1.0
    ) -> None:
        """Initialise a new OneToOneSelfTeaching.

        Args:
            channels: Channels of each taught layer.
            dim: Gate embedding width.
            tau: Gumbel-sigmoid temperature.
        """
        super().__init__()
        self.gates = nn.ModuleList(SwitchGate(c, dim) for c in channels)
        self.tau = tau

    def forward(
        self, student: Sequence[Tensor], teacher: Sequence[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Compute the loss.

        Args:
            student: Student layer outputs.
            teacher: Teacher layer outputs (same shapes).

        Returns:
            The loss and the gates (layers, B).
        """
        losses = []
        gates = []
        for gate, fs, ft in zip(self.gates, student, teacher, strict=True):
            assert isinstance(gate, SwitchGate)
            ft = ft.detach()
            g = gumbel_sigmoid(gate.logits(fs, ft), self.tau, self.training)
            dist = (attention_map(fs) - attention_map(ft)).pow(2).mean(dim=1)
            losses.append((g * dist).mean())
            gates.append(g.detach())
        return torch.stack(losses).sum(), torch.stack(gates)


class FeatureTap:
    """Record the outputs of named sub-modules while active (a context manager)."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        """Initialise a new FeatureTap.

        Args:
            model: The model.
            names: Qualified names of the sub-modules to record.
        """
        modules = dict(model.named_modules())
        self.modules = [modules[n] for n in names]
        self.features: list[Tensor] = []

    @contextmanager
    def capture(self) -> Iterator[list[Tensor]]:
        """Record outputs during the ``with`` block (hooks removed afterwards).

        Yields:
            The list the outputs are appended to, in call order.
        """
        self.features = []
        handles = [
            m.register_forward_hook(lambda _m, _i, out: self.features.append(out))
            for m in self.modules
        ]
        try:
            yield self.features
        finally:
            for h in handles:
                h.remove()


@dataclass
class QuantizationReport:
    """Size and cost of a (hybrid-)quantised model."""

    #: Weight bit width per convolution (qualified name); 32 = full precision.
    weight_bits: dict[str, int] = field(default_factory=dict)
    #: Activation bit width per quantised convolution.
    activation_bits: dict[str, int] = field(default_factory=dict)
    #: Model size in MB (2**20 bytes): quantised weights at their bit width,
    #: everything else at 32 bits.
    size_mb: float = 0.0
    #: Bit operations: sum over layers of MACs x weight bits x activation bits.
    bops: float = 0.0
    #: Full-precision size in MB, for reference.
    fp32_size_mb: float = 0.0

    @property
    def gbops(self) -> float:
        """BOPs in units of 1e9."""
        return self.bops / 1e9


def quantization_report(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 4, 512, 512)
) -> QuantizationReport:
    """Report bit widths, size in MB and BOPs of a model.

    Layers with :class:`QuantConv2d` count at their bit widths (activations at
    the bits of the :class:`QuantAct` of the same block, weights x
    activations); all other layers at 32 x 32 bits. The SR branch, if present,
    is excluded (it is not part of the inference model).

    Args:
        model: A SuperYOLO, quantised or not.
        input_shape: Input shape for the MAC count.

    Returns:
        The report.
    """
    report = QuantizationReport()
    sr = getattr(model, 'sr', None)
    sr_params = {id(p) for p in sr.parameters()} if isinstance(sr, nn.Module) else set()
    act_bits: dict[str, int] = {}
    for name, module in model.named_modules():
        if isinstance(module, Conv) and isinstance(module.act, QuantAct):
            act_bits[f'{name}.conv'] = module.act.num_bits
    bits_total = 0
    fp_total = 0
    for name, module in model.named_modules():
        if name.startswith('sr'):
            continue
        if isinstance(module, QuantConv2d):
            report.weight_bits[name] = module.num_bits
            report.activation_bits[name] = act_bits.get(name, 32)
        elif isinstance(module, nn.Conv2d | nn.Linear):
            report.weight_bits[name] = 32
    for name, p in model.named_parameters():
        if id(p) in sr_params:
            continue
        module_name = name.rsplit('.', 1)[0]
        bits = 32
        if name.endswith('weight') and module_name in report.activation_bits:
            bits = report.weight_bits[module_name]
        bits_total += p.numel() * bits
        fp_total += p.numel() * 32
    report.size_mb = bits_total / 8 / 2**20
    report.fp32_size_mb = fp_total / 8 / 2**20

    def forward(m: nn.Module, args: tuple[object, ...]) -> object:
        x = args[0]
        assert isinstance(x, Tensor)
        forward_raw = getattr(m, 'forward_raw', None)
        return forward_raw(x) if forward_raw is not None else m(x)

    macs = count_macs(model, input_shape=input_shape, forward=forward)
    for name, n in macs.per_layer.items():
        if name.startswith('sr'):
            continue
        w = report.weight_bits.get(name, 32)
        a = report.activation_bits.get(name, 32)
        report.bops += n * w * a
    return report
