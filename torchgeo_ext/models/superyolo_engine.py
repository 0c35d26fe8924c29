"""SuperYOLO's inference engines: a fused eager model with a composed stem, or ONNX Runtime."""

from __future__ import annotations

import copy
import io
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from .superyolo import Detect, SuperYOLO, export_onnx, stem_and_first_conv
from .yolo_layers import Conv

__all__ = [
    'ENGINES',
    'ConvAct',
    'SuperYOLOEagerEngine',
    'SuperYOLOOnnxEngine',
    'inference_engine',
    'onnxruntime_available',
]

#: Names of the engines of :func:`inference_engine`.
ENGINES = ('torch', 'onnxruntime')


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


class ConvAct(nn.Module):
    """A fused (bias, no batch norm) convolution and its activation as one kernel.

    For inference only (the oneDNN kernel has no gradient): on the CPU in
    float32 the two run as one oneDNN convolution with the activation as a
    post-op; elsewhere (a GPU, autocast's low precision) as ``act(conv(x))``.
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
        self.onednn = torch.backends.mkldnn.is_available()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the convolution and the activation.

        Args:
            x: Input (B, C_in, H, W).

        Returns:
            Output (B, C_out, H', W'), in ``x``'s memory format.
        """
        conv = self.conv
        if not self.onednn or x.device.type != 'cpu' or x.dtype != torch.float32:
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


def _fuse_conv_activations(model: nn.Module) -> None:
    """Make every batch-norm-free ``Conv`` and the head's convolution a :class:`ConvAct`."""
    for module in list(model.modules()):
        if isinstance(module, Detect) and isinstance(module.conv, nn.Conv2d):
            # PyTorch runs this 1 x 1 convolution on its slow im2col path.
            module.conv = ConvAct(module.conv, nn.Identity())  # type: ignore[assignment]
        for name, child in list(module.named_children()):
            if (
                isinstance(child, Conv)
                and isinstance(child.bn, nn.Identity)
                and isinstance(child.act, nn.SiLU | nn.Identity)
            ):
                setattr(module, name, ConvAct(child.conv, child.act))


class SuperYOLOEagerEngine(nn.Module):
    """A SuperYOLO prepared for fast eager inference: decoded predictions, no gradients.

    A fused copy of the model (batch norms folded, SR branch dropped) in
    which:

    * the MF stem and the first backbone convolution run as one convolution
      per image (:func:`~torchgeo_ext.models.superyolo.stem_and_first_conv`);
    * every convolution and its SiLU run as one oneDNN kernel on the CPU in
      float32 (:class:`ConvAct`), which also takes the 1 x 1 convolutions
      off the im2col path PyTorch picks for them on one thread;
    * weights are ``channels_last`` (any input layout works).

    Its outputs match the model's eval-mode outputs up to float rounding.
    """

    def __init__(self, model: SuperYOLO) -> None:
        """Prepare a copy of *model* (not modified), on its device.

        Args:
            model: The SuperYOLO.
        """
        super().__init__()
        fused = copy.deepcopy(model).fuse()
        _fuse_conv_activations(fused)
        self.model = fused.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.train(False)

    def train(self, mode: bool = True) -> SuperYOLOEagerEngine:
        """Stay in eval mode: the engine is inference only.

        Args:
            mode: Ignored unless False.

        Returns:
            This engine.
        """
        return super().train(False)

    @torch.inference_mode()
    def forward(self, x: Tensor) -> Tensor:
        """Detect objects.

        Args:
            x: Image (B, C, H, W); H and W multiples of 16, as for the model.

        Returns:
            Decoded predictions, as the model's eval-mode ``forward``.
        """
        model = self.model
        first = stem_and_first_conv(model.stem, model.b1, x)
        raw, _ = model.forward_after_first_conv(first)
        return model.detect.decode(raw)


class SuperYOLOOnnxEngine(nn.Module):
    """A SuperYOLO exported to ONNX (:func:`~torchgeo_ext.models.superyolo.export_onnx`) and run by ONNX Runtime on the CPU.

    Batch, height and width are dynamic, so tiles of any size run through one
    session. Inference only: no gradients, no training mode.
    """

    def __init__(self, model: SuperYOLO, threads: int | None = None) -> None:
        """Export *model* (not modified) and open an ONNX Runtime session on it.

        Args:
            model: The SuperYOLO.
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
        buffer = io.BytesIO()
        export_onnx(model, buffer, image_size=64)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session: Any = onnxruntime.InferenceSession(
            buffer.getvalue(), options, providers=['CPUExecutionProvider']
        )
        self.train(False)

    def train(self, mode: bool = True) -> SuperYOLOOnnxEngine:
        """Stay in eval mode: the exported graph is inference only.

        Args:
            mode: Ignored unless False.

        Returns:
            This engine.
        """
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        """Run the exported graph.

        Args:
            x: Image (B, C, H, W) on any device.

        Returns:
            Decoded predictions, on ``x``'s device.
        """
        image = x.detach().to('cpu', torch.float32).contiguous().numpy()
        (output,) = self.session.run(None, {'image': image})
        return torch.from_numpy(output).to(x.device)


def inference_engine(
    model: SuperYOLO, engine: str, threads: int | None = None
) -> nn.Module:
    """An inference engine for a SuperYOLO, by name.

    Args:
        model: The SuperYOLO (not modified).
        engine: ``'torch'`` (:class:`SuperYOLOEagerEngine`) or ``'onnxruntime'``
            (:class:`SuperYOLOOnnxEngine`).
        threads: ONNX Runtime intra-op threads (default: PyTorch's).

    Returns:
        A module mapping images (B, C, H, W) to decoded predictions.

    Raises:
        ValueError: For an unknown engine.
        InvalidInputError: If ONNX Runtime is asked for but not installed.
    """
    if engine == 'torch':
        return SuperYOLOEagerEngine(model)
    if engine == 'onnxruntime':
        return SuperYOLOOnnxEngine(model, threads)
    raise ValueError(f'engine must be one of {", ".join(ENGINES)}, got {engine!r}')
