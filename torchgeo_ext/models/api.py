"""The model registry: every builder function of this library by name (TorchGeo style)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: Builder name -> ``module:function`` (module relative to :mod:`torchgeo_ext.models`).
#: Strings, so that looking a name up imports only the one model module it needs (the
#: command line must start fast). A new model adds one line per builder.
_BUILDERS: dict[str, str] = {
    # SuperYOLO (Zhang et al. 2023): RGB + IR, single-modality and early-fusion variants.
    'superyolo_mf': 'superyolo:superyolo_mf',
    'superyolo_rgb': 'superyolo:superyolo_rgb',
    'superyolo_ir': 'superyolo:superyolo_ir',
    'superyolo_early': 'superyolo:superyolo_early',
    # SeaDATE (Dong et al. 2024): two-stream RGB-IR YOLO, and its plain two-stream baseline.
    'seadate_yolov5s': 'seadate:seadate_yolov5s',
    'two_stream_yolov5s': 'seadate:two_stream_yolov5s',
    # Oriented detection: YOLOv8n-OBB, FoRA/LMA, the two-stream baseline, E2E-MFD.
    'yolov8n_obb': 'obb_detector:yolov8n_obb',
    'lma_yolov8n_obb': 'lma:lma_yolov8n_obb',
    'two_stream_yolov8n_obb': 'lma:two_stream_yolov8n_obb',
    'e2emfd_yolov8n_obb': 'e2emfd:e2emfd_yolov8n_obb',
    # SAR-Net (SAR ships and aircraft): axis-aligned (YOLOv5 heads) and oriented.
    'sarnet_n': 'sarnet:sarnet_n',
    'sarnet_s': 'sarnet:sarnet_s',
    'sarnet_n_obb': 'sarnet:sarnet_n_obb',
    'sarnet_s_obb': 'sarnet:sarnet_s_obb',
    # DIAnet (cloud recognition).
    'dianet_w48': 'dianet:dianet_w48',
    'dianet_w18': 'dianet:dianet_w18',
    'dianet_w8': 'dianet:dianet_w8',
    # Hyperspectral object tracking.
    'hyat_base': 'hyat:hyat_base',
    'hyat_tiny': 'hyat:hyat_tiny',
    'hymamba_base': 'hymamba:hymamba_base',
    'hymamba_tiny': 'hymamba:hymamba_tiny',
    # FusionSAM (RGB-thermal segmentation on SAM), and SAM itself.
    'fusionsam_vit_b': 'fusionsam:fusionsam_vit_b',
    'fusionsam_vit_l': 'fusionsam:fusionsam_vit_l',
    'fusionsam_vit_h': 'fusionsam:fusionsam_vit_h',
    'fusionsam_tiny': 'fusionsam:fusionsam_tiny',
    'sam_tiny': 'sam:sam_tiny',
    # HSI + LiDAR land-cover classification: MIViT, M3amba.
    'mivit_base': 'mivit:mivit_base',
    'mivit_tiny': 'mivit:mivit_tiny',
    'm3amba_base': 'm3amba:m3amba_base',
    'm3amba_tiny': 'm3amba:m3amba_tiny',
    # FedFusion (federated multi-satellite fusion): per-modality CNNs, shared head.
    'fedfusion': 'fedfusion:fedfusion',
    'fedfusion_tiny': 'fedfusion:fedfusion_tiny',
    # Hyperspectral anomaly detection: BSDM's denoiser, STAD's teacher.
    'bsdm': 'bsdm:bsdm',
    'stad': 'stad:stad',
    # SAP (hyperspectral anomaly detection): the self-supervised anomaly prior network.
    'sap_prior': 'sap:sap_prior',
}


def list_models() -> list[str]:
    """List the names :func:`get_model` accepts.

    Returns:
        The builder names, sorted.
    """
    return sorted(_BUILDERS)


def get_model_builder(name: str) -> Callable[..., Any]:
    """Look up a model's builder function by name.

    Args:
        name: A name from :func:`list_models`.

    Returns:
        The builder function.

    Raises:
        ValueError: If *name* is not a registered builder (the message lists them).
    """
    try:
        target = _BUILDERS[name]
    except KeyError:
        raise ValueError(
            f'unknown model {name!r}; choose one of {", ".join(list_models())}'
        ) from None
    module, function = target.split(':')
    builder: Callable[..., Any] = getattr(
        importlib.import_module(f'{__package__}.{module}'), function
    )
    return builder


def get_model(name: str, **kwargs: Any) -> Any:
    """Build a model by its builder's name.

    Args:
        name: A name from :func:`list_models`.
        **kwargs: Passed to the builder (e.g. ``num_classes``).

    Returns:
        The model (an ``nn.Module``).
    """
    return get_model_builder(name)(**kwargs)
