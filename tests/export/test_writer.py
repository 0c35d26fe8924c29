import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import geopandas as gpd
import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from geopandas.testing import assert_geodataframe_equal
from rasterio.transform import from_origin
from torch.utils.data import DataLoader
from torchgeo.datasets import RasterDataset, stack_samples
from torchgeo.samplers import GriddedPatchSampler

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.export.writer import GeoPredictionWriter

SCRIPT = Path(__file__).parent / 'export_ddp_script.py'


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location('export_ddp_script', SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trainer(writer: GeoPredictionWriter) -> pl.Trainer:
    return pl.Trainer(
        accelerator='cpu',
        devices=1,
        callbacks=[writer],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def run_single(out: Path) -> None:
    script = load_script()
    writer = GeoPredictionWriter(out, class_names=['even', 'odd', 'other'])
    loader = DataLoader(script.TinyGeoDataset(), batch_size=2)
    trainer(writer).predict(script.TinyTask(), loader, return_predictions=False)


def test_writer_non_geo_samples(tmp_path: Path) -> None:
    run_single(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        '000000.tif',
        '000001.tif',
        '000002.tif',
        '000003.tif',
        '000004.tif',
        'detections.gpkg',
    ]
    with rasterio.open(tmp_path / '000003.tif') as src:
        assert src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == (10.0, 0.0, 500480.0, 0.0, -10.0, 5000000.0)
        assert src.count == 3
        assert src.descriptions == ('even', 'odd', 'other')
    dets = gpd.read_file(tmp_path / 'detections.gpkg')
    assert list(dets.columns) == [
        'sample',
        'class_id',
        'class_name',
        'score',
        'geometry',
    ]
    assert list(dets['sample']) == ['000000', '000001', '000002', '000003', '000004']
    assert dets.crs.to_epsg() == 32633
    # the box of sample 3 lies inside that sample's footprint
    minx, miny, maxx, maxy = dets.geometry[3].bounds
    assert 500480 <= minx < maxx <= 500480 + 160
    assert 5000000 - 160 <= miny < maxy <= 5000000


@pytest.mark.slow
def test_writer_ddp_two_processes_equals_one(tmp_path: Path) -> None:
    single, ddp = tmp_path / 'single', tmp_path / 'ddp'
    run_single(single)
    env = {
        **os.environ,
        'PYTHONPATH': str(Path(__file__).parents[2]),
        'OMP_NUM_THREADS': '1',
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(ddp), '2', 'ddp'],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Starting with 2 processes' in proc.stdout + proc.stderr
    names = sorted(p.name for p in single.iterdir())
    assert (
        sorted(p.name for p in ddp.iterdir()) == names
    )  # no leftover parts or temporaries
    for name in names:
        if name.endswith('.tif'):
            assert (single / name).read_bytes() == (ddp / name).read_bytes(), name
    a = gpd.read_file(single / 'detections.gpkg')
    b = gpd.read_file(ddp / 'detections.gpkg')
    assert len(a) == 5  # the sample the distributed sampler repeats is kept once
    assert_geodataframe_equal(a, b)


class ThresholdTask(pl.LightningModule):
    """Class ids at half resolution from a GeoDataset batch (transform in the batch)."""

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        image = batch['image']
        classes = (image[:, 0, ::2, ::2] > 0.5).long()
        return {'prediction': classes}


def test_writer_geodataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    array = rng.random((2, 64, 96)).astype(np.float32)
    src_path = write_raster(
        tmp_path / 'scene.tif',
        array,
        crs='EPSG:32631',
        transform=from_origin(600000, 5200000, 10, 10),
    )
    dataset = RasterDataset(paths=[src_path])
    sampler = GriddedPatchSampler(dataset, size=32, stride=32)
    loader = DataLoader(
        dataset, sampler=sampler, batch_size=2, collate_fn=stack_samples
    )
    out = tmp_path / 'out'
    writer = GeoPredictionWriter(out, class_names=['low', 'high'])
    trainer(writer).predict(ThresholdTask(), loader, return_predictions=False)
    paths = sorted(out.glob('*.tif'))
    assert len(paths) == 6
    assert sorted(writer.raster_paths) == paths
    assert 'x600320_y5200000.tif' in [p.name for p in paths]
    for path in paths:
        with rasterio.open(path) as dst:
            assert dst.crs.to_epsg() == 32631  # from the dataset
            assert dst.res == (20.0, 20.0)  # rescaled to the prediction's pixel size
            assert dst.dtypes == ('uint8',)
            assert dst.tags()['class_names'] == '["low", "high"]'
            pred = dst.read(1)
            col = round((dst.transform.c - 600000) / 10)
            row = round((5200000 - dst.transform.f) / 10)
        expected = array[0, row : row + 32 : 2, col : col + 32 : 2] > 0.5
        np.testing.assert_array_equal(pred, expected)
    assert not (out / 'detections.gpkg').exists()


class NoGeoTask(pl.LightningModule):
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        return {'prediction': batch['image'][:, 0], 'transform': batch['transform']}


def test_writer_needs_crs(tmp_path: Path) -> None:
    samples = [
        {
            'image': torch.zeros(1, 4, 4),
            'transform': torch.tensor([1.0, 0, 0, 0, -1, 4]),
        }
    ]
    loader: DataLoader[Any] = DataLoader(samples, batch_size=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match='pass crs='):
        trainer(GeoPredictionWriter(tmp_path)).predict(NoGeoTask(), loader)
    writer = GeoPredictionWriter(tmp_path, crs='EPSG:3857', vector_name='d.geojson')
    trainer(writer).predict(NoGeoTask(), loader, return_predictions=False)
    with rasterio.open(tmp_path / '000000.tif') as dst:
        assert dst.crs.to_epsg() == 3857
        assert dst.dtypes == ('float32',)
    with pytest.raises(InvalidInputError, match='unknown vector format'):
        GeoPredictionWriter(tmp_path, vector_name='d.txt')


def test_writer_threads_option(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='threads must be positive'):
        GeoPredictionWriter(tmp_path / 'bad', threads=0)
    script = load_script()
    writer = GeoPredictionWriter(tmp_path / 'one', threads=1)
    loader = DataLoader(script.TinyGeoDataset(), batch_size=2)
    trainer(writer).predict(script.TinyTask(), loader, return_predictions=False)
    run_single(tmp_path / 'all')
    for name in ('000000.tif', '000004.tif'):
        with (
            rasterio.open(tmp_path / 'one' / name) as one,
            rasterio.open(tmp_path / 'all' / name) as every,
        ):
            assert one.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG'
            np.testing.assert_array_equal(one.read(), every.read())
