"""Tests of the own-imagery data modules (rasters + vector labels)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from lightning import Trainer
from rasterio.transform import from_origin

from torchgeo_ext.datamodules.geo import (
    GeoDetectionDataModule,
    GeoSegmentationDataModule,
    Normalisation,
    compute_normalisation,
)
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.samplers.object import ObjectSampler

ROOT = os.path.join('tests', 'data', 'own')
RGB = os.path.join(ROOT, 'rgb.tif')
IR = os.path.join(ROOT, 'ir.tif')
LABELS = os.path.join(ROOT, 'labels.gpkg')
PATCH = 64
KW: dict[str, Any] = {
    'patch_size': PATCH,
    'batch_size': 2,
    'grid_cell_size': 128,
    'val_split': 0.2,
    'test_split': 0.2,
}


@pytest.fixture(scope='module')
def detection() -> GeoDetectionDataModule:
    return GeoDetectionDataModule([RGB, IR], LABELS, **KW)


def _box(query: Any) -> shapely.Polygon:
    x, y = query[0], query[1]
    return shapely.box(x.start, y.start, x.stop, y.stop)


def test_metadata(detection: GeoDetectionDataModule) -> None:
    assert detection.modalities == {'rgb': [0, 1, 2], 'ir': [3]}
    assert detection.in_channels == 4
    assert detection.class_names == ['car', 'truck']
    assert detection.num_classes == 2
    assert detection.grid_cell_size == 128
    assert detection.dataset.crs.to_epsg() == 32633
    assert detection.dataset.res == (0.05, 0.05)


def test_normalisation_auto_and_dtype(detection: GeoDetectionDataModule) -> None:
    norm = detection.normalisation
    with rasterio.open(RGB) as src:
        red = src.read(1).astype(np.float64)
    lo, hi = np.percentile(red, (1, 99))
    assert norm.offset[0] == pytest.approx(lo)
    assert norm.scale[0] == pytest.approx(hi - lo)
    assert len(norm.offset) == 4
    assert compute_normalisation([[RGB], [IR]], 'dtype').as_dict() == {
        'offset': [0.0] * 4,
        'scale': [255.0] * 4,
    }
    image = torch.full((2, 4, 3, 3), 255.0)
    out = Normalisation.from_dict({'offset': 5, 'scale': [10, 10, 10, 50]}, 4).apply(
        image
    )
    assert out[0, :, 0, 0].tolist() == [25.0, 25.0, 25.0, 5.0]


def test_normalisation_arguments() -> None:
    dm = GeoDetectionDataModule(
        [RGB, IR], LABELS, normalisation={'offset': 0, 'scale': 255}, **KW
    )
    assert dm.normalisation.scale == (255.0,) * 4
    with pytest.raises(ValueError, match='3 values for 4 bands'):
        GeoDetectionDataModule(
            [RGB, IR], LABELS, normalisation={'offset': 0, 'scale': [1, 2, 3]}, **KW
        )
    with pytest.raises(ValueError, match='positive'):
        Normalisation((0.0,), (0.0,))


def test_splits_never_overlap(detection: GeoDetectionDataModule) -> None:
    detection.setup('fit')
    detection.setup('test')
    cells = detection.split_cells
    assert len(cells['val']) == 3
    assert len(cells['test']) == 3
    assert len(cells['train']) == 10
    assert detection.train_sampler is not None
    assert detection.val_sampler is not None
    assert detection.test_sampler is not None
    train = [_box(q) for _ in range(3) for q in detection.train_sampler]
    val = [_box(q) for q in detection.val_sampler]
    test = [_box(q) for q in detection.test_sampler]
    assert val
    assert test
    held_out = shapely.union_all(val + test + cells['val'] + cells['test'])
    training_area = shapely.union_all(cells['train']).buffer(1e-6)
    for patch in train:
        assert patch.intersection(held_out).area < 1e-9
        assert patch.within(training_area)
    assert shapely.union_all(val).intersection(shapely.union_all(test)).area < 1e-9
    # each held-out patch lies in a cell of its split, on the pixel grid
    for patches, split in ((val, 'val'), (test, 'test')):
        for patch in patches:
            assert any(patch.within(c.buffer(1e-9)) for c in cells[split])
            assert (patch.bounds[0] - 500_123.45) / 0.05 == pytest.approx(
                round((patch.bounds[0] - 500_123.45) / 0.05), abs=1e-6
            )


def test_detection_batches(detection: GeoDetectionDataModule) -> None:
    detection.setup('fit')
    batch = next(iter(detection.train_dataloader()))
    assert batch['image'].shape == (2, 4, PATCH, PATCH)
    assert batch['transform'].shape == (2, 9)
    assert batch['transform'].dtype == torch.float64
    assert 'mask' not in batch
    assert 'bbox' not in batch  # axis-aligned module
    assert len(batch['bbox_xyxy']) == 2
    assert len(batch['label']) == 2
    out = detection.aug(batch)
    raw = batch['image']
    norm = detection.normalisation
    expected = (raw[:, 0] - norm.offset[0]) / norm.scale[0]
    torch.testing.assert_close(out['image'][:, 0], expected)
    # object patches: at least one object per patch of the first batch
    assert all(len(b) > 0 for b in batch['bbox_xyxy'])


def test_oriented_batches() -> None:
    dm = GeoDetectionDataModule([RGB, IR], LABELS, oriented=True, **KW)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert [b.shape[1] for b in batch['bbox']] == [8, 8]
    assert dm.train_aug is not None
    moved = dm.train_aug(batch)
    assert len(moved['bbox']) == 2


def test_segmentation_batches() -> None:
    dm = GeoSegmentationDataModule([RGB, IR], LABELS, **KW)
    assert dm.class_names == ['background', 'car', 'truck']
    assert dm.num_classes == 3
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['mask'].shape == (2, PATCH, PATCH)
    assert batch['mask'].dtype == torch.int64
    assert dm.train_aug is not None
    out = dm.train_aug(batch)
    assert out['image'].shape == (2, 4, PATCH, PATCH)
    assert set(out['mask'].unique().tolist()) <= {0, 1, 2}
    assert (out['mask'] > 0).any()
    # flips and rotations move image and mask together: warm IR pixels = objects
    raw_ir = out['image'][:, 3] * dm.normalisation.scale[3] + dm.normalisation.offset[3]
    agreement = ((raw_ir > 150) == (out['mask'] > 0)).float().mean()
    assert agreement > 0.95


def test_single_modality_glob_and_folder(tmp_path: Path) -> None:
    dm = GeoDetectionDataModule([os.path.join(ROOT, 'rgb*.tif')], LABELS, **KW)
    assert dm.modalities == {'rgb': [0, 1, 2]}
    folder = tmp_path / 'ir'
    folder.mkdir()
    (folder / 'scene.tif').write_bytes(Path(IR).read_bytes())
    dm = GeoDetectionDataModule([RGB, folder], LABELS, **KW)
    assert dm.in_channels == 4


def _far_raster(path: Path, crs: str = 'EPSG:32633') -> None:
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=16,
        height=16,
        count=1,
        dtype='uint8',
        crs=crs,
        transform=from_origin(300_000, 4_000_000, 1, 1),
    ) as dst:
        dst.write(np.zeros((1, 16, 16), dtype=np.uint8))


def test_modalities_do_not_overlap(tmp_path: Path) -> None:
    far = tmp_path / 'far.tif'
    _far_raster(far)
    with pytest.raises(
        InvalidInputError, match=r'far\.tif: does not overlap the first'
    ):
        GeoDetectionDataModule([RGB, far], LABELS, **KW)


def test_labels_do_not_overlap(tmp_path: Path) -> None:
    labels = gpd.read_file(LABELS).to_crs('EPSG:32633')
    labels['geometry'] = labels.translate(5_000, 0)
    path = tmp_path / 'elsewhere.gpkg'
    labels.to_file(path)
    with pytest.raises(InvalidInputError, match=r'elsewhere\.gpkg: does not overlap'):
        GeoDetectionDataModule([RGB, IR], path, **KW)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='matches no file'):
        GeoDetectionDataModule([os.path.join(ROOT, 'nothing*.tif')], LABELS, **KW)
    with pytest.raises(MissingInputError, match='not found'):
        GeoDetectionDataModule([os.path.join(ROOT, 'missing.tif')], LABELS, **KW)
    nocrs = tmp_path / 'nocrs.tif'
    with rasterio.open(
        nocrs, 'w', driver='GTiff', width=4, height=4, count=1, dtype='uint8'
    ) as dst:
        dst.write(np.zeros((1, 4, 4), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match=r'nocrs\.tif: has no CRS'):
        GeoDetectionDataModule([nocrs], LABELS, **KW)
    with pytest.raises(
        InvalidInputError, match=r"class values not in classes: \['truck'\]"
    ):
        GeoDetectionDataModule([RGB, IR], LABELS, classes=['car'], **KW)
    with pytest.raises(InvalidInputError, match='too few'):
        GeoDetectionDataModule([RGB, IR], LABELS, **(KW | {'grid_cell_size': 512}))


def test_no_held_out_splits() -> None:
    dm = GeoDetectionDataModule(
        [RGB, IR], LABELS, **(KW | {'val_split': 0.0, 'test_split': 0.0})
    )
    dm.setup('fit')
    assert list(dm.val_dataloader()) == []
    assert len(dm.split_cells['train']) == 16
    # all cells are training cells: one region, nothing cut at cell borders
    assert len(dm.split_regions['train']) == 1
    objects = dm.labels.objects.geometry
    crossing = [
        o for o in objects if not any(o.within(c) for c in dm.split_cells['train'])
    ]
    assert crossing  # the fake data has objects on cell borders
    assert dm.never_whole == (0, 0.0)
    sampler = dm.train_sampler
    assert isinstance(sampler, ObjectSampler)
    assert sampler.unplaceable == 0


def test_objects_cut_only_where_training_meets_held_out(
    detection: GeoDetectionDataModule,
) -> None:
    detection.setup('fit')
    cells = detection.split_cells
    held_out = shapely.union_all(cells['val'] + cells['test']).buffer(-1e-6)
    sampler = detection.train_sampler
    assert isinstance(sampler, ObjectSampler)
    whole = {tuple(b) for b, _ in sampler.placeable}
    n_cut = 0
    for geometry in detection.labels.objects.geometry:
        if not any(geometry.intersects(c) for c in cells['train']):
            continue  # not in the training area
        key = tuple(geometry.bounds)
        if geometry.intersects(held_out):
            assert key not in whole  # it would show held-out pixels
            n_cut += 1
        elif not any(geometry.within(c) for c in cells['train']):
            # across the border of two training cells: still trained whole,
            # unless a patch around it would enter a held-out cell
            box = shapely.box(*geometry.bounds).buffer(PATCH * 0.05, cap_style='square')
            if not box.intersects(held_out):
                assert key in whole
    never, share = detection.never_whole
    assert never >= n_cut > 0
    assert share == pytest.approx(
        never
        / sum(
            g.intersects(shapely.union_all(cells['train']))
            for g in detection.labels.objects.geometry
        )
    )


def test_adjacent_cells_merge_corner_cells_do_not() -> None:
    from torchgeo_ext.datamodules.geo import _regions

    a, b = shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)  # share an edge
    c = shapely.box(2, 1, 3, 2)  # touches b at a corner only
    regions = _regions([a, b, c])
    assert sorted(r.area for r in regions) == [1.0, 2.0]
    assert _regions([]) == []


def _fit(task: Any, dm: Any) -> None:
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(task, datamodule=dm)
    assert trainer.state.finished


@pytest.mark.slow
def test_fit_superyolo(detection: GeoDetectionDataModule) -> None:
    from torchgeo_ext.trainers.detection import SuperYOLOTask

    task = SuperYOLOTask(
        num_classes=detection.num_classes,
        width=0.125,
        super_resolution=False,
        warmup_epochs=0,
        ema=False,
    )
    _fit(task, detection)
    # the task recorded what the data module normalised with
    assert task.hparams['normalisation'] == detection.normalisation.as_dict()


@pytest.mark.slow
def test_fit_lma() -> None:
    from torchgeo_ext.trainers.oriented_detection import OrientedDetectionTask

    dm = GeoDetectionDataModule([RGB, IR], LABELS, oriented=True, **KW)
    task = OrientedDetectionTask(
        model='lma_yolov8n_obb',
        num_classes=dm.num_classes,
        modalities=dm.modalities,
        width=0.0625,
        depth=0.33,
        rank=4,
        target_rank=2,
        warmup_epochs=0,
        max_detections=20,
    )
    _fit(task, dm)


@pytest.mark.slow
def test_fit_dianet() -> None:
    from torchgeo_ext.trainers.segmentation import SegmentationTask

    dm = GeoSegmentationDataModule([RGB, IR], LABELS, **KW)
    task = SegmentationTask(
        model='dianet_w8',
        model_kwargs={'layer1_planes': 4, 'attention_channels': 8},
        in_channels=dm.in_channels,
        num_classes=dm.num_classes,
        ignore_index=None,
        loss='ce',
    )
    _fit(task, dm)


def test_tiled_modality_objects_on_the_seam(tmp_path: Path) -> None:
    """An orthomosaic in two tiles: objects across the seam are still placed whole."""
    folder = tmp_path / 'rgb'
    folder.mkdir()
    seam = 213  # through a column of object centres
    with rasterio.open(RGB) as src:
        for name, window in (
            ('west.tif', rasterio.windows.Window(0, 0, seam, 512)),
            ('east.tif', rasterio.windows.Window(seam, 0, 512 - seam, 512)),
        ):
            profile = src.profile | {
                'width': window.width,
                'height': window.height,
                'transform': src.window_transform(window),
            }
            with rasterio.open(folder / name, 'w', **profile) as dst:
                dst.write(src.read(window=window))
    dm = GeoDetectionDataModule(
        [folder, IR],
        LABELS,
        **(KW | {'grid_cell_size': 512, 'val_split': 0.0, 'test_split': 0.0}),
    )
    assert len(dm.dataset.index) == 2
    dm.setup('fit')
    truth = gpd.read_file(LABELS).to_crs('EPSG:32633')
    seam_x = 500_123.45 + seam * 0.05
    crossing = truth.geometry.bounds.pipe(
        lambda b: (b.minx < seam_x) & (b.maxx > seam_x)
    )
    assert crossing.sum() >= 3
    assert isinstance(dm.train_sampler, ObjectSampler)
    assert dm.train_sampler.unplaceable == 0


def test_empty_label_layer_on_the_command_line(tmp_path: Path) -> None:
    # Training on a label layer without features: one line naming the file,
    # not a traceback about a missing dataset.
    empty = tmp_path / 'empty.gpkg'
    gpd.read_file(LABELS).iloc[:0].to_file(empty)
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'torchgeo_ext.cli',
            'fit',
            '--config',
            'tests/conf/own_superyolo.yaml',
            '--data.init_args.labels',
            str(empty),
            '--trainer.default_root_dir',
            str(tmp_path / 'run'),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert 'not found' not in proc.stderr.lower()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.endswith(f'{empty}: no objects in the layer: label some objects first')
