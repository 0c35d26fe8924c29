"""Deprecated: moved to :mod:`torchgeo_ext.models.superyolo_engine`."""

from __future__ import annotations

import warnings

from torch import Tensor, nn

from .superyolo import SuperYOLO
from .superyolo_engine import (
    ConvAct,
    SuperYOLOEagerEngine,
    SuperYOLOOnnxEngine,
    onnxruntime_available,
)

__all__ = ['ConvAct', 'OnnxRuntimeModule', 'onnxruntime_available', 'optimise_eager']

warnings.warn(
    'torchgeo_ext.models.engine is deprecated: use '
    'torchgeo_ext.models.superyolo_engine (SuperYOLOEagerEngine, SuperYOLOOnnxEngine)',
    DeprecationWarning,
    stacklevel=2,
)


def optimise_eager(model: nn.Module) -> nn.Module:
    """Deprecated: :class:`~torchgeo_ext.models.superyolo_engine.SuperYOLOEagerEngine`.

    Args:
        model: A SuperYOLO.

    Returns:
        Its eager inference engine (a prepared copy; *model* is not modified).

    Raises:
        TypeError: If *model* is no SuperYOLO.
    """
    if not isinstance(model, SuperYOLO):
        raise TypeError(
            f'the eager engine runs a SuperYOLO, got {type(model).__name__}'
        )
    return SuperYOLOEagerEngine(model)


class OnnxRuntimeModule(SuperYOLOOnnxEngine):
    """Deprecated: :class:`~torchgeo_ext.models.superyolo_engine.SuperYOLOOnnxEngine`."""

    def __init__(
        self, module: nn.Module, example: Tensor, threads: int | None = None
    ) -> None:
        """Export a SuperYOLO and open an ONNX Runtime session on it.

        Args:
            module: A SuperYOLO (not modified).
            example: Unused: the export makes its own example input.
            threads: Intra-op threads (default: PyTorch's current thread count).

        Raises:
            TypeError: If *module* is no SuperYOLO.
        """
        if not isinstance(module, SuperYOLO):
            raise TypeError(
                f'the ONNX Runtime engine runs a SuperYOLO, got {type(module).__name__}'
            )
        super().__init__(module, threads)
