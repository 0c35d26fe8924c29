"""Model complexity: multiply-accumulate (MAC) counts by forward hooks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ['Complexity', 'count_macs', 'count_parameters']


@dataclass
class Complexity:
    """The result of :func:`count_macs`."""

    #: Total multiply-accumulates of one forward pass.
    macs: int = 0
    #: Parameters of the model.
    params: int = 0
    #: MACs per layer (qualified module name -> MACs), in call order.
    per_layer: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        """MACs in units of 1e9."""
        return self.macs / 1e9

    @property
    def mparams(self) -> float:
        """Parameters in units of 1e6."""
        return self.params / 1e6


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Count a model's parameters.

    Args:
        model: The model.
        trainable_only: Count only parameters that require gradients.

    Returns:
        The number of parameters.
    """
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


def _conv_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    assert isinstance(module, nn.modules.conv._ConvNd)
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # Each input value is scattered to out_channels/groups * kernel outputs.
        x = inputs[0]
        return int(x.numel() * (module.out_channels // module.groups) * kernel)
    return int(output.numel() * (module.in_channels // module.groups) * kernel)


def _linear_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    assert isinstance(module, nn.Linear)
    return int(output.numel() * module.in_features)


def _norm_macs(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> int:
    # Inference-time affine normalisation: one multiply-add per value.
    return int(output.numel())


#: MAC rules by layer type. Extend it (or pass ``rules``) for custom layers.
DEFAULT_RULES: dict[
    type[nn.Module], Callable[[nn.Module, tuple[Any, ...], Tensor], int]
] = {
    nn.Conv1d: _conv_macs,
    nn.Conv2d: _conv_macs,
    nn.Conv3d: _conv_macs,
    nn.ConvTranspose1d: _conv_macs,
    nn.ConvTranspose2d: _conv_macs,
    nn.ConvTranspose3d: _conv_macs,
    nn.Linear: _linear_macs,
}

#: Extra rules used with ``include_norm=True``.
NORM_RULES: dict[
    type[nn.Module], Callable[[nn.Module, tuple[Any, ...], Tensor], int]
] = {
    nn.BatchNorm1d: _norm_macs,
    nn.BatchNorm2d: _norm_macs,
    nn.BatchNorm3d: _norm_macs,
    nn.GroupNorm: _norm_macs,
    nn.LayerNorm: _norm_macs,
}


def count_macs(
    model: nn.Module,
    inputs: Tensor | tuple[Any, ...] | None = None,
    input_shape: tuple[int, ...] | None = None,
    device: str | torch.device = 'meta',
    include_norm: bool = False,
    rules: dict[type[nn.Module], Callable[[nn.Module, tuple[Any, ...], Tensor], int]]
    | None = None,
    forward: Callable[[nn.Module, tuple[Any, ...]], Any] | None = None,
) -> Complexity:
    """Count the multiply-accumulates of one forward pass.

    The model is deep-copied (the original is not touched), put in eval mode
    and moved to ``device``. On the default ``meta`` device nothing is
    computed; pass ``device='cpu'`` for models whose forward needs real values
    (data-dependent control flow).

    Hooks count the layers that dominate the cost of convolutional networks
    (convolutions, transposed convolutions, linear layers and, optionally,
    normalisation layers). The convention is the "GMACs" / thop-style "FLOPs"
    of detection papers: a k x k convolution producing ``N`` output values
    costs ``N * k * k * C_in / groups`` MACs; element-wise operations, pooling
    and activations are free. "GFLOPs" in the YOLOv5 sense are 2 x MACs.

    Args:
        model: The model.
        inputs: Example input tensor or tuple of positional inputs.
        input_shape: Alternatively, the shape of a single zero input tensor.
        device: Device for the counting pass.
        include_norm: Also count batch/group/layer norm (as in unfused models).
        rules: Layer type -> ``fn(module, inputs, output) -> MACs``; default
            :data:`DEFAULT_RULES` (plus :data:`NORM_RULES` if requested).
        forward: Custom call ``fn(model, inputs)`` instead of ``model(*inputs)``.

    Returns:
        Total and per-layer MACs and the parameter count.

    Raises:
        ValueError: If neither ``inputs`` nor ``input_shape`` is given.
    """
    if inputs is None:
        if input_shape is None:
            raise ValueError('give inputs or input_shape')
        inputs = torch.zeros(input_shape)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    table = dict(rules if rules is not None else DEFAULT_RULES)
    if include_norm:
        table.update(NORM_RULES)

    result = Complexity(params=count_parameters(model))
    work = copy.deepcopy(model).eval().to(device)
    args = tuple(a.to(device) if isinstance(a, Tensor) else a for a in args)
    handles = _count_with_hooks(work, table, result)
    try:
        with torch.no_grad():
            if forward is not None:
                forward(work, args)
            else:
                work(*args)
    finally:
        for handle in handles:
            handle.remove()
    return result


def _count_with_hooks(
    model: nn.Module,
    table: dict[type[nn.Module], Callable[[nn.Module, tuple[Any, ...], Tensor], int]],
    result: Complexity,
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hook every layer with a rule to add its MACs to ``result``; return the hooks."""
    handles = []
    for name, module in model.named_modules():
        rule = next((r for t, r in table.items() if isinstance(module, t)), None)
        if rule is None:
            continue

        def hook(
            mod: nn.Module,
            inp: tuple[Any, ...],
            out: Any,
            name: str = name,
            rule: Callable[[nn.Module, tuple[Any, ...], Tensor], int] = rule,
        ) -> None:
            out_tensor = out[0] if isinstance(out, tuple) else out
            macs = rule(mod, inp, out_tensor)
            result.per_layer[name] = result.per_layer.get(name, 0) + macs
            result.macs += macs

        handles.append(module.register_forward_hook(hook))
    return handles
