"""Loss functions of the paper models, one module per family (as in TorchGeo).

Names resolve lazily (PEP 562): importing the package imports no loss module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .anomaly import stad_distillation_loss, stad_teacher_loss
    from .classification import (
        distillation_loss,
        gaussian_mutual_information,
        information_aggregation_loss,
        mivit_class_weights,
        reconstruction_loss,
        softmax_focal_loss,
    )
    from .fedfusion import fedfusion_loss
    from .fusion import FusionLoss, laplacian_pyramid
    from .fusionsam import FusionSAMLoss, dice_loss, vector_quantization_loss
    from .obb import OBBLoss
    from .segmentation import DistributionAwareLoss, OhemCrossEntropyLoss
    from .tracking import TrackingLoss, centre_heatmap, focal_loss
    from .yolo import YOLOv5Loss

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'stad_distillation_loss': 'torchgeo_ext.losses.anomaly',
    'stad_teacher_loss': 'torchgeo_ext.losses.anomaly',
    'distillation_loss': 'torchgeo_ext.losses.classification',
    'gaussian_mutual_information': 'torchgeo_ext.losses.classification',
    'information_aggregation_loss': 'torchgeo_ext.losses.classification',
    'mivit_class_weights': 'torchgeo_ext.losses.classification',
    'reconstruction_loss': 'torchgeo_ext.losses.classification',
    'softmax_focal_loss': 'torchgeo_ext.losses.classification',
    'fedfusion_loss': 'torchgeo_ext.losses.fedfusion',
    'FusionLoss': 'torchgeo_ext.losses.fusion',
    'laplacian_pyramid': 'torchgeo_ext.losses.fusion',
    'FusionSAMLoss': 'torchgeo_ext.losses.fusionsam',
    'dice_loss': 'torchgeo_ext.losses.fusionsam',
    'vector_quantization_loss': 'torchgeo_ext.losses.fusionsam',
    'OBBLoss': 'torchgeo_ext.losses.obb',
    'DistributionAwareLoss': 'torchgeo_ext.losses.segmentation',
    'OhemCrossEntropyLoss': 'torchgeo_ext.losses.segmentation',
    'TrackingLoss': 'torchgeo_ext.losses.tracking',
    'centre_heatmap': 'torchgeo_ext.losses.tracking',
    'focal_loss': 'torchgeo_ext.losses.tracking',
    'YOLOv5Loss': 'torchgeo_ext.losses.yolo',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
