"""Tests for the whole-scene classification maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import Tensor

from torchgeo_ext.datasets.houston2013 import Houston2013
from torchgeo_ext.datasets.trento import Trento
from torchgeo_ext.pipelines.classification import (
    DensePatchClassifier,
    classification_map,
    classify_raster,
    classify_scene,
)

GEOTIFF = Path('tests/data/houston2013/geotiff')


class PatchModel(torch.nn.Module):
    """A small convolutional patch classifier (depends on the whole patch)."""

    def __init__(self, bands: int, classes: int, patch: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(bands, classes, patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).flatten(1)


def test_scene_matches_dataset_patches() -> None:
    data = Trento('tests/data/trento/split', split='test', patch_size=5)
    model = PatchModel(64, 6, 5).eval()
    labels, scores = classify_scene(
        model, data.scene()['image'], 5, batch_size=37, padding='symmetric'
    )
    assert labels.shape == (20, 30)
    for i in range(0, len(data), 17):
        sample = data[i]
        expected = model(sample['image'][None]).softmax(1)[0]
        r, c = int(sample['row']), int(sample['col'])
        assert int(labels[r, c]) == int(expected.argmax())
        assert float(scores[r, c]) == pytest.approx(float(expected.max()), rel=1e-5)


@pytest.mark.parametrize('padding', ['symmetric', 'reflect', 'constant'])
def test_padding_matches_dataset(padding: str) -> None:
    data = Trento('tests/data/trento/split', patch_size=6, padding=padding)
    seen: list[Tensor] = []

    def model(x: Tensor) -> Tensor:
        seen.append(x)
        return torch.zeros(len(x), 6)

    mask = torch.zeros(20, 30, dtype=torch.bool)
    r, c = int(data.rows[0]), int(data.cols[0])
    mask[r, c] = True
    classify_scene(model, data.scene()['image'], 6, padding=padding, mask=mask)
    torch.testing.assert_close(seen[0][0], data[0]['image'])


def test_map_keeps_crs(tmp_path: Path) -> None:
    data = Houston2013(GEOTIFF, split='test', patch_size=5)
    model = PatchModel(145, 15, 5).eval()
    out = classification_map(model, data, tmp_path / 'map.tif', scores=True)
    with (
        rasterio.open(out) as src,
        rasterio.open(GEOTIFF / '2013_IEEE_GRSS_DF_Contest_CASI.tif') as ref,
    ):
        assert src.crs == ref.crs
        assert src.transform == ref.transform
        assert (src.width, src.height, src.count) == (30, 20, 2)
        assert src.nodata == 255
        classes = src.read(1)
        assert json.loads(src.tags()['class_names']) == list(Houston2013.classes)
    labels, _ = classify_scene(model, data.scene()['image'], 5)
    np.testing.assert_array_equal(classes, labels.numpy())


def test_mat_release_gives_pixel_grid(tmp_path: Path) -> None:
    data = Houston2013('tests/data/houston2013/mat', split='test', patch_size=5)
    model = PatchModel(145, 15, 5).eval()
    out = classification_map(model, data, tmp_path / 'map.tif', labelled_only=True)
    with rasterio.open(out) as src:
        assert src.crs is None
        assert src.tags()['georeferenced'] == 'false'
        assert src.transform.is_identity
        classes = src.read(1)
    assert int((classes != 255).sum()) == len(data)


def test_classify_raster_matches_scene(tmp_path: Path) -> None:
    data = Houston2013(GEOTIFF, patch_size=3)
    model = PatchModel(145, 15, 3).eval()
    out = classify_raster(
        model,
        [
            GEOTIFF / '2013_IEEE_GRSS_DF_Contest_CASI.tif',
            GEOTIFF / '2013_IEEE_GRSS_DF_Contest_LiDAR.tif',
        ],
        tmp_path / 'tiled.tif',
        patch_size=3,
        normalisation=data.normalisation,
        tile_size=12,
        class_names=list(Houston2013.classes),
    )
    labels, _ = classify_scene(model, data.scene()['image'], 3)
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 26915
        np.testing.assert_array_equal(src.read(1), labels.numpy())


def test_dense_wrapper_and_errors() -> None:
    model = PatchModel(2, 3, 3).eval()
    dense = DensePatchClassifier(model, 3, padding='constant')
    out = dense(torch.rand(2, 2, 5, 6))
    assert out.shape == (2, 3, 5, 6)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 5, 6))
    with pytest.raises(ValueError, match='padding'):
        classify_scene(model, torch.rand(2, 4, 4), 3, padding='wrap')
    with pytest.raises(ValueError, match='mask'):
        classify_scene(
            model, torch.rand(2, 4, 4), 3, mask=torch.ones(3, 3, dtype=torch.bool)
        )


def test_module_behind_bound_method_runs_in_eval_mode() -> None:
    class WithNorm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = torch.nn.BatchNorm2d(2)
            self.modes: list[bool] = []

        def classify(self, x: Tensor) -> Tensor:
            self.modes.append(self.training)
            return self.norm(x).mean((2, 3))

    model = WithNorm().train()
    classify_scene(model.classify, torch.rand(2, 4, 4), 3)
    assert model.modes == [False]
    assert model.training
