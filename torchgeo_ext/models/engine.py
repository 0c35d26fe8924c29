"""Inference engines: run a model's eval-mode forward through ONNX Runtime on the CPU.

PyTorch's eager CPU path spends much of a small detector's time outside the
convolutions (activation, concatenation and layout copies between layers); ONNX
Runtime fuses those into its kernels. On SuperYOLO at 512 x 512 on one thread it
was 1.7-2.9x faster than the plain fused NCHW eager model in four runs
(``benchmarks/superyolo_cpu.md``).

:class:`OnnxRuntimeModule` exports a copy of a module once (TorchScript-based
exporter, no extra package beyond ``onnx``/``onnxruntime``) and is then a drop-in
``nn.Module`` whose forward takes and returns tensors. It is inference only: no
gradients, no training mode.

:func:`optimise_eager` prepares a fused YOLO model for PyTorch's own eager CPU
path: ``channels_last`` memory format and every convolution with its SiLU run as
one oneDNN primitive (``torch.ops.mkldnn._convolution_pointwise``, the kernel
PyTorch's compiler uses for the same fusion), which also takes the 1 x 1
convolutions off the slower im2col path PyTorch picks for them on one thread.
For SuperYOLO it also composes the full-resolution MF stem with the first
backbone convolution into one 5 x 5 stride-2 convolution per image; with these
the eager forward matches ONNX Runtime's speed (``benchmarks/superyolo_cpu.md``).
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from .superyolo import Detect, SuperYOLO
from .yolo_layers import Conv

__all__ = ['ConvAct', 'OnnxRuntimeModule', 'onnxruntime_available', 'optimise_eager']


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime can be imported.

    Returns:
        True if ``onnxruntime`` is installed.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxRuntimeModule(nn.Module):
    """A module's eval-mode forward, exported to ONNX and run by ONNX Runtime.

    The exported graph has one input ``image`` (B, C, H, W) and one output, with
    batch, height and width dynamic, so tiles of any size run through one session.
    """

    def __init__(
        self, module: nn.Module, example: Tensor, threads: int | None = None
    ) -> None:
        """Export *module* and open an ONNX Runtime session on it.

        Args:
            module: The model (not modified: a CPU copy in eval mode is exported).
                Its forward must map one image tensor to one tensor.
            example: An input of the shape the model will see (B, C, H, W).
            threads: Intra-op threads (default: PyTorch's current thread count).

        Raises:
            InvalidInputError: If ONNX Runtime is not installed.
        """
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise InvalidInputError(
                None,
                "ONNX Runtime is not installed: pip install 'torchgeo-ext[onnx]' "
                '(or use the torch engine)',
            ) from None
        exported = copy.deepcopy(module).cpu().eval()
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter is deprecated but needs no extra package.
            warnings.simplefilter('ignore')
            torch.onnx.export(
                exported,
                (example.detach().cpu().float(),),
                buffer,  # type: ignore[arg-type]  # a file object works too
                input_names=['image'],
                output_names=['output'],
                opset_version=17,
                dynamo=False,
                dynamic_axes={'image': {0: 'batch', 2: 'height', 3: 'width'}},
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session: Any = onnxruntime.InferenceSession(
            buffer.getvalue(), options, providers=['CPUExecutionProvider']
        )
        self.train(False)

    def train(self, mode: bool = True) -> OnnxRuntimeModule:
        """Stay in eval mode: the exported graph is inference only.

        Args:
            mode: Ignored unless False.

        Returns:
            This module.
        """
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """Run the exported graph.

        Args:
            x: Image (B, C, H, W) on any device.

        Returns:
            The model's eval-mode output, on ``x``'s device.
        """
        image = x.detach().to('cpu', torch.float32).contiguous().numpy()
        (output,) = self.session.run(None, {'image': image})
        return torch.from_numpy(output).to(x.device)


class ConvAct(nn.Module):
    """A fused (bias, no batch norm) convolution and its activation as one kernel.

    On the CPU in float32 the two run as one oneDNN convolution with the
    activation as a post-op; elsewhere as ``act(conv(x))``.
    """

    def __init__(self, conv: nn.Conv2d, act: nn.Module) -> None:
        """Initialise a new ConvAct.

        Args:
            conv: The convolution (its weights are shared, not copied).
            act: ``nn.SiLU`` or ``nn.Identity``.

        Raises:
            TypeError: For another activation.
        """
        super().__init__()
        if isinstance(act, nn.SiLU):
            self.attr = 'swish'
        elif isinstance(act, nn.Identity):
            self.attr = 'none'
        else:
            raise TypeError(f'no fused kernel for {type(act).__name__}')
        self.conv = conv
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        """Apply the convolution and the activation.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H', W'), in ``x``'s memory format.
        """
        conv = self.conv
        if (
            x.device.type != 'cpu'
            or x.dtype != torch.float32
            or torch.is_grad_enabled()
        ):
            return self.act(conv(x))
        out: Tensor = torch.ops.mkldnn._convolution_pointwise(
            x,
            conv.weight,
            conv.bias,
            list(conv.padding),  # type: ignore[arg-type]  # int pairs after init
            list(conv.stride),
            list(conv.dilation),
            conv.groups,
            self.attr,
            [],
            '',
        )
        return out


def optimise_eager(model: nn.Module) -> nn.Module:
    """Prepare a fused YOLO model for fast eager CPU inference, in place.

    Each batch-norm-free :class:`~torchgeo_ext.models.yolo_layers.Conv` (and
    the SuperYOLO head's convolution) becomes a :class:`ConvAct`, a SuperYOLO
    runs its stem and first backbone convolution as one convolution
    (:func:`~torchgeo_ext.models.superyolo.stem_and_first_conv`), and the
    model moves to ``channels_last`` (feed it any layout: the first
    convolution converts). Outputs match the plain model up
    to float rounding. Models without fused layers, or PyTorch builds without
    oneDNN, only change memory format.

    Args:
        model: A model whose ``Conv`` layers are fused (e.g. ``SuperYOLO.fuse()``).

    Returns:
        The same model, in eval mode.
    """
    model.eval()
    for module in list(model.modules()):
        if isinstance(module, SuperYOLO) and isinstance(module.b1.bn, nn.Identity):
            module.merge_stem = True
        if isinstance(module, Detect) and isinstance(module.conv, nn.Conv2d):
            # PyTorch runs this 1 x 1 convolution on its slow im2col path.
            module.conv = ConvAct(module.conv, nn.Identity())  # type: ignore[assignment]
    if torch.backends.mkldnn.is_available():
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if (
                    isinstance(child, Conv)
                    and isinstance(child.bn, nn.Identity)
                    and isinstance(child.act, (nn.SiLU, nn.Identity))
                ):
                    setattr(parent, name, ConvAct(child.conv, child.act))
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
