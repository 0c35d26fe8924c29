"""Tests of the FYH tile dataset, its georeferencing, FYHScenes and FYHDataModule."""

import os
import shutil
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import Subset
from torchgeo.datasets import DatasetNotFoundError
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from torchgeo_ext.converters.fyh import write_scene_geotiffs
from torchgeo_ext.datamodules.fyh import FYHDataModule
from torchgeo_ext.datasets.fyh import (
    FYH,
    FYHScenes,
    grid_transform,
    parse_tile_name,
    tile_bounds,
    tile_offset,
    tile_transform,
)
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = Path(__file__).parents[1] / 'data' / 'fyh'
STEM_A = 'FY4A-_AGRI--_N_REGC_1047E_L1-_FDI-_MULT_NOM_20190807040000_20190807041459_4000M_V0001'
STEM_B = 'FY4A-_AGRI--_N_REGC_1047E_L1-_FDI-_MULT_NOM_20190807060000_20190807061459_4000M_V0001'


def stems(subset: object) -> set[str]:
    assert isinstance(subset, Subset)
    dataset = subset.dataset
    assert isinstance(dataset, FYH)
    return {dataset.tiles[i][0] for i in subset.indices}


def size(dataset: object) -> int:
    assert isinstance(dataset, FYH | Subset)
    return len(dataset)


def copy_split(tmp_path: Path, split: str = 'train') -> Path:
    for folder in (f'mat{split}', f'matmask{split}'):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


# ------------------------------------------------------------ tile georeferencing


def test_grid_transform() -> None:
    assert tuple(grid_transform())[:6] == pytest.approx(
        (0.05, 0, 84.975, 0, -0.05, 50.025)
    )


@pytest.mark.parametrize(
    ('k', 'bounds'),
    [
        (0, (84.975, 45.025, 89.975, 50.025)),
        (9, (129.975, 45.025, 134.975, 50.025)),
        (10, (84.975, 40.025, 89.975, 45.025)),
        (84, (104.975, 5.025, 109.975, 10.025)),
        (89, (129.975, 5.025, 134.975, 10.025)),
    ],
)
def test_tile_bounds(k: int, bounds: tuple[float, float, float, float]) -> None:
    assert tile_bounds(k) == pytest.approx(bounds)


@pytest.mark.parametrize('k', [0, 1, 37, 45, 89])
def test_tile_pixel_centres(k: int) -> None:
    i, j = divmod(k, 10)
    assert tile_offset(k) == (100 * i, 100 * j)
    transform = tile_transform(k)
    for r, c in [(0, 0), (99, 99), (17, 63)]:
        lon, lat = transform @ (c + 0.5, r + 0.5)
        assert lat == pytest.approx(50 - 0.05 * (100 * i + r))
        assert lon == pytest.approx(85 + 0.05 * (100 * j + c))


def test_tile_index_out_of_range() -> None:
    with pytest.raises(ValueError, match=r'outside 0\.\.89'):
        tile_offset(90)


def test_parse_tile_name() -> None:
    assert parse_tile_name(f'/x/{STEM_A}_45.mat') == (STEM_A, 45)
    with pytest.raises(InvalidInputError, match='cannot georeference'):
        parse_tile_name('/x/tile.mat')
    with pytest.raises(InvalidInputError, match=r'outside 0\.\.89'):
        parse_tile_name(f'/x/{STEM_A}_90.mat')


# -------------------------------------------------------------------- dataset


@pytest.mark.parametrize(('split', 'length'), [('train', 3), ('test', 2)])
def test_getitem(split: str, length: int) -> None:
    ds = FYH(ROOT, split=split)
    assert len(ds) == length
    for sample in (ds[i] for i in range(len(ds))):
        assert sample['image'].shape == (14, 100, 100)
        assert sample['image'].dtype == torch.float32
        assert sample['mask'].shape == (100, 100)
        assert sample['mask'].dtype == torch.int64
        assert 0 <= sample['mask'].min()
        assert sample['mask'].max() <= 10
        assert sample['crs'] == 'EPSG:4326'
        assert sample['transform'].dtype == torch.float64
        assert sample['transform'].shape == (6,)
        stem, k = parse_tile_name(str(sample['path']))
        assert sample['id'] == f'{stem}_{k}'
        expected = torch.tensor(tuple(tile_transform(k))[:6], dtype=torch.float64)
        torch.testing.assert_close(sample['transform'], expected)


def test_values_match_files() -> None:
    ds = FYH(ROOT, split='train')
    index = ds.files.index(str(ROOT / 'mattrain' / f'{STEM_A}_45.mat'))
    sample = ds[index]
    image = scipy.io.loadmat(ds.files[index])['data']
    mask = scipy.io.loadmat(ds.mask_files[index])['data']
    np.testing.assert_allclose(
        sample['image'].numpy(), image.transpose(2, 0, 1), rtol=1e-6
    )
    np.testing.assert_array_equal(sample['mask'].numpy(), mask)
    # Tile 45: i = 4, j = 5 -> upper-left corner 109.975E, 30.025N.
    assert sample['transform'][[2, 5]].tolist() == pytest.approx([109.975, 30.025])


def test_class_table() -> None:
    assert len(FYH.classes) == 11
    assert FYH.classes[0] == 'Clear'
    assert FYH.classes[3] == 'Deep convection'
    assert FYH.classes[FYH.ignore_index] == 'Fill'
    assert FYH.ignore_index == 10


def test_transforms() -> None:
    def flip(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sample['image'] = sample['image'].flip(-1)
        return sample

    plain = FYH(ROOT)[0]
    flipped = FYH(ROOT, transforms=flip)[0]
    torch.testing.assert_close(flipped['image'], plain['image'].flip(-1))


def test_invalid_split() -> None:
    with pytest.raises(AssertionError):
        FYH(ROOT, split='val')


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        FYH(tmp_path)


def test_missing_mask(tmp_path: Path) -> None:
    root = copy_split(tmp_path)
    os.remove(root / 'matmasktrain' / f'{STEM_A}_0.mat')
    with pytest.raises(MissingInputError, match='mask partner missing'):
        FYH(root)


def test_bad_tile_name(tmp_path: Path) -> None:
    root = copy_split(tmp_path)
    for folder in ('mattrain', 'matmasktrain'):
        os.rename(root / folder / f'{STEM_A}_0.mat', root / folder / 'scene.mat')
    with pytest.raises(InvalidInputError, match='cannot georeference'):
        FYH(root)


def test_wrong_shape(tmp_path: Path) -> None:
    root = copy_split(tmp_path)
    scipy.io.savemat(
        root / 'mattrain' / f'{STEM_A}_0.mat', {'data': np.zeros((100, 100, 3))}
    )
    ds = FYH(root)
    with pytest.raises(InvalidInputError, match=r'expected \(100, 100, 14\)'):
        ds[ds.files.index(str(root / 'mattrain' / f'{STEM_A}_0.mat'))]
    scipy.io.savemat(
        root / 'matmasktrain' / f'{STEM_B}_89.mat', {'data': np.zeros((50, 100))}
    )
    with pytest.raises(InvalidInputError, match='mask tile has shape'):
        ds[ds.files.index(str(root / 'mattrain' / f'{STEM_B}_89.mat'))]


def test_tolerated_layouts(tmp_path: Path) -> None:
    root = copy_split(tmp_path)
    name = f'{STEM_A}_45.mat'
    original = FYH(ROOT)[FYH(ROOT).files.index(str(ROOT / 'mattrain' / name))]
    image = scipy.io.loadmat(root / 'mattrain' / name)['data']
    mask = scipy.io.loadmat(root / 'matmasktrain' / name)['data']
    scipy.io.savemat(root / 'mattrain' / name, {'data': image.transpose(2, 0, 1)})
    scipy.io.savemat(root / 'matmasktrain' / name, {'data': mask[..., None] * 1.0})
    ds = FYH(root)
    sample = ds[ds.files.index(str(root / 'mattrain' / name))]
    torch.testing.assert_close(sample['image'], original['image'])
    torch.testing.assert_close(sample['mask'], original['mask'])


def test_no_data_variable(tmp_path: Path) -> None:
    root = copy_split(tmp_path)
    path = root / 'mattrain' / f'{STEM_A}_0.mat'
    scipy.io.savemat(path, {'image': np.zeros((100, 100, 14))})
    ds = FYH(root)
    with pytest.raises(InvalidInputError, match='no variable named "data"'):
        ds[ds.files.index(str(path))]
    path.write_bytes(b'garbage')
    with pytest.raises(InvalidInputError, match=r'not a readable \.mat'):
        ds[ds.files.index(str(path))]


def test_mat_v73(tmp_path: Path) -> None:
    # MATLAB v7.3 files are HDF5 with column-major (reversed) axes.
    root = copy_split(tmp_path)
    path = root / 'mattrain' / f'{STEM_A}_0.mat'
    original = scipy.io.loadmat(path)['data']
    header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .'
    path.unlink()
    with h5py.File(path, 'w', userblock_size=512) as f:
        f['data'] = original.transpose()
    with open(path, 'r+b') as f:
        f.write(header.ljust(116) + b'\x00' * 8 + b'\x00\x02IM')
    ds = FYH(root)
    sample = ds[ds.files.index(str(path))]
    np.testing.assert_allclose(
        sample['image'].numpy(), original.transpose(2, 0, 1), rtol=1e-6
    )


def test_plot() -> None:
    ds = FYH(ROOT, split='test')
    sample = ds[0]
    fig = ds.plot(sample, suptitle='FYH')
    assert len(fig.axes) == 2
    legend = fig.axes[1].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()][3] == '3 Deep convection'
    plt.close(fig)
    sample['prediction'] = sample['mask'].clone()
    fig = ds.plot(sample, show_titles=False, rgb_channels=(11, 8, 6))
    assert len(fig.axes) == 3
    plt.close(fig)
    del sample['mask']
    fig = ds.plot(sample)
    assert len(fig.axes) == 2
    plt.close(fig)


# ---------------------------------------------------------------- data module


def test_datamodule_splits() -> None:
    dm = FYHDataModule(str(ROOT), batch_size=1, val_split_pct=0.5)
    dm.setup('fit')
    train_stems = stems(dm.train_dataset)
    val_stems = stems(dm.val_dataset)
    assert size(dm.train_dataset) + size(dm.val_dataset) == 3
    assert len(val_stems) == 1
    assert not train_stems & val_stems
    # Deterministic.
    again = FYHDataModule(str(ROOT), batch_size=1, val_split_pct=0.5)
    again.setup('fit')
    assert stems(again.val_dataset) == val_stems
    batch = next(iter(dm.train_dataloader()))
    batch = dm.on_after_batch_transfer(batch, 0)
    assert batch['image'].shape == (1, 14, 100, 100)
    assert batch['mask'].shape == (1, 100, 100)
    assert batch['transform'].shape == (1, 6)
    assert batch['crs'] == ['EPSG:4326']
    # Identity normalisation: values stay in [0, 1].
    assert batch['image'].max() <= 1


def test_datamodule_test_predict() -> None:
    dm = FYHDataModule(str(ROOT), batch_size=2)
    dm.setup('test')
    dm.setup('predict')
    assert size(dm.test_dataset) == 2
    assert size(dm.predict_dataset) == 2
    batch = next(iter(dm.predict_dataloader()))
    assert batch['image'].shape == (2, 14, 100, 100)
    assert batch['transform'].shape == (2, 6)
    dm.setup('validate')
    # 10 % of 2 training scenes: at least one scene is held out.
    assert len(stems(dm.val_dataset)) == 1


# ------------------------------------------------------------ GeoDataset view


@pytest.fixture(scope='module')
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp('fyh_scenes')
    rows, cols = np.indices((900, 1000))
    for n, stem in enumerate((STEM_A, STEM_B)):
        image = np.stack([((rows + cols + 7 * c + n) % 50) / 49 for c in range(14)])
        mask = ((rows // 100 + cols // 100 + n) % 11).astype(np.uint8)
        write_scene_geotiffs(
            str(out), stem, image, mask, [(0.0, 1.0), (180.0, 300.0)], cog=False
        )
    return out


def test_scenes_index(scenes_dir: Path) -> None:
    ds = FYHScenes(scenes_dir)
    assert len(ds) == 2
    x, y, t = ds.bounds
    assert (x.start, x.stop, y.start, y.stop) == pytest.approx(
        (84.975, 134.975, 5.025, 50.025)
    )
    assert ds.res == pytest.approx((0.05, 0.05))
    assert ds.crs.to_epsg() == 4326
    assert str(t.start) == '2019-08-07 04:00:00'


def test_scenes_sample_matches_tile_grid(scenes_dir: Path) -> None:
    ds = FYHScenes(scenes_dir)
    west, south, east, north = tile_bounds(37)  # i = 3, j = 7
    _x, _y, t = ds.bounds
    # The second scan only (06:00-06:14:59).
    start = t.stop - (t.stop - t.start) / 10
    sample = ds[west:east, south:north, start : t.stop]
    assert sample['image'].shape == (14, 100, 100)
    assert sample['mask'].shape == (100, 100)
    assert sample['mask'].dtype == torch.int64
    assert sample['transform'][:6].tolist() == pytest.approx(
        tuple(tile_transform(37))[:6]
    )
    rows, cols = np.indices((100, 100))
    rows, cols = rows + 300, cols + 700
    expected = ((rows + cols + 7 * 2 + 1) % 50) / 49
    np.testing.assert_allclose(sample['image'][2].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(sample['mask'].numpy(), (3 + 7 + 1) % 11)


def test_scenes_samplers(scenes_dir: Path) -> None:
    ds = FYHScenes(scenes_dir, bands=['C12', 'C02'])
    sampler = GridGeoSampler(ds, size=100, stride=100)
    assert len(sampler) == 2 * 90
    sample = ds[next(iter(sampler))]
    assert sample['image'].shape == (2, 100, 100)
    with pytest.warns(DeprecationWarning, match='RandomPatchSampler'):
        random = RandomGeoSampler(ds, size=64, length=3)
    for query in random:
        assert ds[query]['mask'].shape == (64, 64)


def test_scenes_plot(scenes_dir: Path) -> None:
    ds = FYHScenes(scenes_dir)
    west, south, east, north = tile_bounds(0)
    sample = ds[west:east, south:north]
    sample['prediction'] = sample['mask']
    fig = ds.plot(sample, suptitle='scene')
    assert len(fig.axes) == 3
    plt.close(fig)
    two = FYHScenes(scenes_dir, bands=['C01', 'C02'])
    fig = two.plot(two[west:east, south:north])
    plt.close(fig)


def test_scenes_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        FYHScenes(tmp_path)


def test_prediction_exports_to_geotiff(tmp_path: Path) -> None:
    import rasterio

    from torchgeo_ext.export.raster import write_raster

    sample = FYH(ROOT, split='train')[1]
    _stem, k = parse_tile_name(str(sample['path']))
    path = write_raster(
        tmp_path / 'pred.tif',
        sample['mask'].to(torch.uint8),
        crs=sample['crs'],
        transform=sample['transform'],
        nodata=FYH.ignore_index,
        cog=False,
    )
    i, j = divmod(k, 10)
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 4326
        lon, lat = src.xy(0, 0)  # centre of the tile's first pixel
        assert (lat, lon) == pytest.approx((50 - 5 * i, 85 + 5 * j))
        lon, lat = src.xy(99, 99)
        assert (lat, lon) == pytest.approx((50 - 5 * i - 4.95, 85 + 5 * j + 4.95))
        np.testing.assert_array_equal(src.read(1), sample['mask'].numpy())


def test_scenes_missing_partner(scenes_dir: Path, tmp_path: Path) -> None:
    shutil.copy(scenes_dir / f'{STEM_A}_image.tif', tmp_path)
    shutil.copy(scenes_dir / f'{STEM_A}_label.tif', tmp_path)
    shutil.copy(scenes_dir / f'{STEM_B}_image.tif', tmp_path)
    with pytest.raises(MissingInputError, match='label partner'):
        FYHScenes(tmp_path)
    os.remove(tmp_path / f'{STEM_B}_image.tif')
    shutil.copy(scenes_dir / f'{STEM_B}_label.tif', tmp_path)
    with pytest.raises(MissingInputError, match='image partner'):
        FYHScenes(tmp_path)
