"""Inference engines: run a model's eval-mode forward through ONNX Runtime on the CPU.

PyTorch's eager CPU path spends much of a small detector's time outside the
convolutions (activation, concatenation and layout copies between layers); ONNX
Runtime fuses those into its kernels. On SuperYOLO at 512 x 512 on one thread it
was 1.7x faster than the fused eager model (``benchmarks/superyolo_cpu.md``).

:class:`OnnxRuntimeModule` exports a copy of a module once (TorchScript-based
exporter, no extra package beyond ``onnx``/``onnxruntime``) and is then a drop-in
``nn.Module`` whose forward takes and returns tensors. It is inference only: no
gradients, no training mode.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError

__all__ = ['OnnxRuntimeModule', 'onnxruntime_available']


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
