"""Own-imagery training on rasters and labels served over HTTP (issue 27)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.datamodules.geo import GeoDetectionDataModule
from torchgeo_ext.errors import MissingInputError
from torchgeo_ext.export.http_server import LocalRangeServer

OWN = Path(__file__).parents[1] / 'data' / 'own'
KW: dict[str, Any] = {
    'patch_size': 64,
    'batch_size': 2,
    'grid_cell_size': 128,
    'val_split': 0.2,
    'test_split': 0.2,
}

Serve = Callable[[str | os.PathLike[str]], LocalRangeServer]


def test_remote_rasters_and_labels_train_like_local_ones(serve: Serve) -> None:
    server = serve(OWN)
    remote = GeoDetectionDataModule(
        [server.url('rgb.tif'), server.url('ir.tif')], server.url('labels.gpkg'), **KW
    )
    local = GeoDetectionDataModule(
        [OWN / 'rgb.tif', OWN / 'ir.tif'], OWN / 'labels.gpkg', **KW
    )
    assert remote.image_files[0] == [f'/vsicurl/{server.url("rgb.tif")}']
    assert remote.modalities == local.modalities == {'rgb': [0, 1, 2], 'ir': [3]}
    assert remote.class_names == local.class_names
    assert remote.normalisation == local.normalisation
    for dm in (remote, local):
        dm.setup('validate')
    a = next(iter(remote.val_dataloader()))
    b = next(iter(local.val_dataloader()))
    torch.testing.assert_close(a['image'], b['image'])
    assert len(a['bbox_xyxy']) == len(b['bbox_xyxy'])
    for x, y in zip(a['bbox_xyxy'], b['bbox_xyxy'], strict=True):
        torch.testing.assert_close(x, y)
    assert server.bytes_sent > 0


def test_missing_remote_inputs_name_the_url(serve: Serve) -> None:
    server = serve(OWN)
    missing = server.url('none.tif')
    with pytest.raises(MissingInputError, match=rf'{missing}: not found \(.*404'):
        GeoDetectionDataModule([missing], server.url('labels.gpkg'), **KW)
    labels = server.url('none.gpkg')
    with pytest.raises(MissingInputError, match=rf'{labels}: not found'):
        GeoDetectionDataModule([server.url('rgb.tif')], labels, **KW)
