"""Paper models, one module each, and their shared building blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:  # real imports for type checkers; at run time names load on first use
    from .api import get_model, get_model_builder, list_models
    from .bsdm import BSDM, bsdm_scores
    from .dianet import DIANet, dianet_w8, dianet_w18, dianet_w48
    from .e2emfd import E2EMFD, e2emfd_yolov8n_obb
    from .fedfusion import FedFusion, compress_features, fedfusion_tiny
    from .fusionsam import (
        FusionSAM,
        fusionsam_tiny,
        fusionsam_vit_b,
        fusionsam_vit_h,
        fusionsam_vit_l,
    )
    from .hyat import HyATracker, hyat_base, hyat_tiny
    from .hymamba import HyMambaTracker, hymamba_base, hymamba_tiny
    from .lma import (
        LMADetector,
        TwoStreamOBBDetector,
        lma_yolov8n_obb,
        two_stream_yolov8n_obb,
    )
    from .local_anomaly import crd_scores, lrx_scores
    from .m3amba import M3amba, m3amba_base, m3amba_tiny
    from .mamba import SS2D, MambaBlock, selective_scan
    from .mivit import MIViT, mivit_base, mivit_tiny
    from .obb_detector import OBBDetector, yolov8n_obb
    from .rx import RX, rx_scores
    from .sam import build_sam, load_sam, sam_tiny
    from .sap import AnomalyPrior, sap_prior, sap_scores
    from .sarnet import (
        SARNet,
        SARNetOBB,
        sarnet_n,
        sarnet_n_obb,
        sarnet_s,
        sarnet_s_obb,
    )
    from .seadate import SeaDATE, seadate_yolov5s, two_stream_yolov5s
    from .stad import STADStudent, STADTeacher, stad_scores
    from .superyolo import (
        SuperYOLO,
        superyolo_early,
        superyolo_ir,
        superyolo_mf,
        superyolo_rgb,
    )
    from .weights import read_state_dict

# Public name -> module that defines it. A new public name adds one line here and
# one import above (tests/test_architecture.py checks that they agree).
_EXPORTS: dict[str, str] = {
    'get_model': 'torchgeo_ext.models.api',
    'get_model_builder': 'torchgeo_ext.models.api',
    'list_models': 'torchgeo_ext.models.api',
    'BSDM': 'torchgeo_ext.models.bsdm',
    'bsdm_scores': 'torchgeo_ext.models.bsdm',
    'DIANet': 'torchgeo_ext.models.dianet',
    'dianet_w8': 'torchgeo_ext.models.dianet',
    'dianet_w18': 'torchgeo_ext.models.dianet',
    'dianet_w48': 'torchgeo_ext.models.dianet',
    'E2EMFD': 'torchgeo_ext.models.e2emfd',
    'e2emfd_yolov8n_obb': 'torchgeo_ext.models.e2emfd',
    'FedFusion': 'torchgeo_ext.models.fedfusion',
    'compress_features': 'torchgeo_ext.models.fedfusion',
    'fedfusion_tiny': 'torchgeo_ext.models.fedfusion',
    'FusionSAM': 'torchgeo_ext.models.fusionsam',
    'fusionsam_tiny': 'torchgeo_ext.models.fusionsam',
    'fusionsam_vit_b': 'torchgeo_ext.models.fusionsam',
    'fusionsam_vit_h': 'torchgeo_ext.models.fusionsam',
    'fusionsam_vit_l': 'torchgeo_ext.models.fusionsam',
    'HyATracker': 'torchgeo_ext.models.hyat',
    'hyat_base': 'torchgeo_ext.models.hyat',
    'hyat_tiny': 'torchgeo_ext.models.hyat',
    'HyMambaTracker': 'torchgeo_ext.models.hymamba',
    'hymamba_base': 'torchgeo_ext.models.hymamba',
    'hymamba_tiny': 'torchgeo_ext.models.hymamba',
    'LMADetector': 'torchgeo_ext.models.lma',
    'TwoStreamOBBDetector': 'torchgeo_ext.models.lma',
    'lma_yolov8n_obb': 'torchgeo_ext.models.lma',
    'two_stream_yolov8n_obb': 'torchgeo_ext.models.lma',
    'crd_scores': 'torchgeo_ext.models.local_anomaly',
    'lrx_scores': 'torchgeo_ext.models.local_anomaly',
    'M3amba': 'torchgeo_ext.models.m3amba',
    'm3amba_base': 'torchgeo_ext.models.m3amba',
    'm3amba_tiny': 'torchgeo_ext.models.m3amba',
    'MambaBlock': 'torchgeo_ext.models.mamba',
    'SS2D': 'torchgeo_ext.models.mamba',
    'selective_scan': 'torchgeo_ext.models.mamba',
    'MIViT': 'torchgeo_ext.models.mivit',
    'mivit_base': 'torchgeo_ext.models.mivit',
    'mivit_tiny': 'torchgeo_ext.models.mivit',
    'OBBDetector': 'torchgeo_ext.models.obb_detector',
    'yolov8n_obb': 'torchgeo_ext.models.obb_detector',
    'RX': 'torchgeo_ext.models.rx',
    'rx_scores': 'torchgeo_ext.models.rx',
    'build_sam': 'torchgeo_ext.models.sam',
    'load_sam': 'torchgeo_ext.models.sam',
    'sam_tiny': 'torchgeo_ext.models.sam',
    'AnomalyPrior': 'torchgeo_ext.models.sap',
    'sap_prior': 'torchgeo_ext.models.sap',
    'SeaDATE': 'torchgeo_ext.models.seadate',
    'seadate_yolov5s': 'torchgeo_ext.models.seadate',
    'two_stream_yolov5s': 'torchgeo_ext.models.seadate',
    'sap_scores': 'torchgeo_ext.models.sap',
    'SARNet': 'torchgeo_ext.models.sarnet',
    'SARNetOBB': 'torchgeo_ext.models.sarnet',
    'sarnet_n': 'torchgeo_ext.models.sarnet',
    'sarnet_n_obb': 'torchgeo_ext.models.sarnet',
    'sarnet_s': 'torchgeo_ext.models.sarnet',
    'sarnet_s_obb': 'torchgeo_ext.models.sarnet',
    'STADStudent': 'torchgeo_ext.models.stad',
    'STADTeacher': 'torchgeo_ext.models.stad',
    'stad_scores': 'torchgeo_ext.models.stad',
    'SuperYOLO': 'torchgeo_ext.models.superyolo',
    'superyolo_early': 'torchgeo_ext.models.superyolo',
    'superyolo_ir': 'torchgeo_ext.models.superyolo',
    'superyolo_mf': 'torchgeo_ext.models.superyolo',
    'superyolo_rgb': 'torchgeo_ext.models.superyolo',
    'read_state_dict': 'torchgeo_ext.models.weights',
}

__all__ = tuple(sorted(_EXPORTS))

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
