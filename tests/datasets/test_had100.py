import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.io
import torch
from lightning.pytorch import Trainer
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datamodules.had100 import HAD100DataModule, RandomCrop
from torchgeo_ext.datasets.had100 import HAD100
from torchgeo_ext.datasets.hyperspectral import (
    AVIRIS_BANDS,
    AVIRIS_NG_BANDS,
    HyperspectralScene,
)
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = Path(__file__).parents[1] / 'data' / 'had100'


@pytest.mark.parametrize(
    ('split', 'sensor', 'layout', 'bands', 'length', 'channels'),
    [
        ('test', 'aviris_ng', 'raw', None, 2, 276),
        ('train', 'aviris_ng', 'raw', None, 2, 276),
        ('train', 'aviris', 'raw', None, 2, 162),
        ('test', 'aviris_ng', 'processed', 10, 2, 10),
        ('train', 'aviris', 'processed', None, 2, 32),
        ('test', 'aviris_ng', 'mat', [0, 5, 7], 2, 3),
        ('train', 'aviris_ng', 'mat', None, 2, 32),
    ],
)
def test_getitem(
    split: str,
    sensor: str,
    layout: str,
    bands: int | list[int] | None,
    length: int,
    channels: int,
) -> None:
    ds = HAD100(ROOT, split=split, sensor=sensor, layout=layout, bands=bands)
    assert len(ds) == length
    sample = ds[0]
    image = sample['image']
    assert image.dtype == torch.float32
    assert image.shape[0] == channels
    assert sample['valid_mask'].dtype == torch.bool
    assert sample['valid_mask'].shape == image.shape[1:]
    if split == 'test':
        assert sample['mask'].dtype == torch.int64
        assert sample['mask'].shape == image.shape[1:]
        assert set(sample['mask'].unique().tolist()) == {0, 1}
    else:
        assert 'mask' not in sample
    if layout == 'raw':
        assert sample['crs'] == 'EPSG:32611'
        assert sample['transform'].dtype == torch.float64
        assert sample['transform'].shape == (6,)
    else:
        assert 'crs' not in sample
        assert 'transform' not in sample


def test_raw_official_band_selection() -> None:
    ds = HAD100(ROOT, split='test')
    full = HyperspectralScene(ds.files[0])
    sample = ds[0]
    np.testing.assert_array_equal(
        sample['image'].numpy(), full.image[list(AVIRIS_NG_BANDS)]
    )
    # bands index the selected bands; an int takes the first N of them
    first = HAD100(ROOT, split='test', bands=4)[0]['image']
    np.testing.assert_array_equal(first.numpy(), full.image[list(AVIRIS_NG_BANDS[:4])])
    chosen = HAD100(ROOT, split='test', bands=[275, 0])[0]['image']
    np.testing.assert_array_equal(
        chosen.numpy(), full.image[[AVIRIS_NG_BANDS[275], AVIRIS_NG_BANDS[0]]]
    )
    raw = HAD100(ROOT, split='test', official_bands=False)[0]['image']
    assert raw.shape[0] == 425


def test_raw_classic_band_selection() -> None:
    ds = HAD100(ROOT, split='train', sensor='aviris')
    for i in range(len(ds)):
        full = HyperspectralScene(ds.files[i])
        np.testing.assert_array_equal(
            ds[i]['image'].numpy(), full.image[list(AVIRIS_BANDS)]
        )


def test_raw_mask_and_nodata() -> None:
    ds = HAD100(ROOT, split='test')
    sample = ds[0]
    gt = scipy.io.loadmat(ROOT / 'gt' / 'aviris_ng_gt' / f'{ds.files[0].stem}.mat')
    np.testing.assert_array_equal(sample['mask'].numpy(), gt['gt'])
    assert not sample['valid_mask'][0, 0]
    assert sample['valid_mask'].sum() == 63
    assert (sample['image'] > 0).all()  # -9999 filled, not left or zeroed


def test_processed_mask_from_channel_1() -> None:
    ds = HAD100(ROOT, split='test', layout='processed')
    mask = ds[1]['mask']
    assert mask.sum() == 4
    array = np.load(ds.files[1])
    np.testing.assert_array_equal(ds[1]['image'].numpy(), array.transpose(2, 0, 1))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match='split'):
        HAD100(ROOT, split='val')
    with pytest.raises(ValueError, match='sensor'):
        HAD100(ROOT, sensor='hyspex')
    with pytest.raises(ValueError, match='layout'):
        HAD100(ROOT, layout='zip')
    with pytest.raises(ValueError, match='aviris_ng'):
        HAD100(ROOT, split='test', sensor='aviris')
    with pytest.raises(ValueError, match='bands'):
        HAD100(ROOT, bands=0)


def test_too_many_bands() -> None:
    with pytest.raises(InvalidInputError, match='277 bands requested'):
        HAD100(ROOT, split='test', bands=277)[0]
    with pytest.raises(InvalidInputError, match=r'\.npy.*out of range'):
        HAD100(ROOT, split='test', layout='processed', bands=[32])[0]


def test_not_found(tmp_path: Path) -> None:
    for layout in HAD100.layouts:
        with pytest.raises(DatasetNotFoundError, match='Dataset not found'):
            HAD100(tmp_path, layout=layout)


def copy_raw(tmp_path: Path) -> Path:
    root = tmp_path / 'had100'
    shutil.copytree(ROOT / 'data', root / 'data')
    shutil.copytree(ROOT / 'gt', root / 'gt')
    return root


def test_wrong_band_count(tmp_path: Path) -> None:
    root = copy_raw(tmp_path)
    normal = root / 'data' / 'aviris_normal'
    for path in normal.iterdir():
        shutil.move(path, root / 'data' / 'aviris_ng_normal' / path.name)
    ds = HAD100(root, split='train')
    index = [p.name for p in ds.files].index('f090710t01p00r10_10.hdr')
    with pytest.raises(InvalidInputError, match=r'f090710t01p00r10_10\.hdr.*224 bands'):
        ds[index]


def test_header_without_data(tmp_path: Path) -> None:
    root = copy_raw(tmp_path)
    (root / 'data' / 'aviris_ng_target' / 'ang20170821t183707_1.dat').unlink()
    with pytest.raises(MissingInputError, match=r'ang20170821t183707_1\.hdr'):
        HAD100(root, split='test')[0]


def test_missing_ground_truth(tmp_path: Path) -> None:
    root = copy_raw(tmp_path)
    (root / 'gt' / 'aviris_ng_gt' / 'ang20170821t183707_1.mat').unlink()
    with pytest.raises(MissingInputError, match=r'ang20170821t183707_1\.mat'):
        HAD100(root, split='test')[0]


def test_transforms() -> None:
    ds = HAD100(ROOT, split='test', transforms=RandomCrop(4))
    sample = ds[0]
    assert sample['image'].shape == (276, 4, 4)
    assert sample['mask'].shape == (4, 4)


def test_random_crop_geometry() -> None:
    image = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 5, 6)
    transform = torch.tensor([2.0, 0.0, 100.0, 0.0, -2.0, 50.0], dtype=torch.float64)
    sample = {
        'image': image,
        'mask': (image[0] > 10).long(),
        'valid_mask': torch.ones(5, 6, dtype=torch.bool),
        'transform': transform,
    }
    for seed in range(5):
        out = RandomCrop(3, torch.Generator().manual_seed(seed))(sample)
        value = int(out['image'][0, 0, 0])  # = 6 * y0 + x0
        y0, x0 = divmod(value, 6)
        assert torch.equal(out['image'], image[:, y0 : y0 + 3, x0 : x0 + 3])
        assert torch.equal(out['mask'], sample['mask'][y0 : y0 + 3, x0 : x0 + 3])
        expected = [2.0, 0.0, 100.0 + 2 * x0, 0.0, -2.0, 50.0 - 2 * y0]
        assert out['transform'].tolist() == expected
    padded = RandomCrop(8)(sample)
    assert padded['image'].shape == (2, 8, 8)
    assert padded['valid_mask'].sum() == 30
    assert torch.equal(padded['image'][:, :5, :6], image)


def test_plot() -> None:
    ds = HAD100(ROOT, split='test')
    sample = ds[0]
    ds.plot(sample, suptitle='test')
    plt.close()
    sample['prediction'] = torch.rand(8, 8)
    fig = ds.plot(sample, show_titles=False, rgb_bands=[0, 1, 2])
    assert len(fig.axes) == 3
    plt.close()
    ds = HAD100(ROOT, split='train', layout='mat', bands=5)
    fig = ds.plot(ds[0])
    assert len(fig.axes) == 1
    plt.close()


def test_datamodule() -> None:
    dm = HAD100DataModule(root=ROOT, batch_size=2, patch_size=4, bands=6)
    dm.trainer = Trainer(accelerator='cpu', max_epochs=1, logger=False)
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['image'].shape == (2, 6, 4, 4)
    assert batch['valid_mask'].shape == (2, 4, 4)
    assert 'mask' not in batch
    assert len(batch['crs']) == 2
    val = next(iter(dm.val_dataloader()))
    assert val['image'].shape == (1, 6, 8, 8)
    assert val['mask'].shape == (1, 8, 8)
    assert dm.on_after_batch_transfer(val, 0) is val
    dm.setup('test')
    assert len(dm.test_dataloader()) == 2
    dm.setup('predict')
    assert len(dm.predict_dataloader()) == 2


def test_datamodule_classic_tests_on_ng() -> None:
    dm = HAD100DataModule(root=ROOT, sensor='aviris', bands=10, patch_size=8)
    dm.setup('fit')
    assert isinstance(dm.train_dataset, HAD100)
    assert isinstance(dm.val_dataset, HAD100)
    assert dm.train_dataset.sensor == 'aviris'
    assert dm.val_dataset.sensor == 'aviris_ng'


@pytest.mark.parametrize('index', [0, 1])  # north-up and rotated map info
def test_georeferencing_round_trip(tmp_path: Path, index: int) -> None:
    rasterio = pytest.importorskip('rasterio')
    from rasterio.transform import Affine

    ds = HAD100(ROOT, split='test', bands=3)
    sample = ds[index]
    transform = Affine(*sample['transform'].tolist())
    # the ENVI tie point (pixel 1, 1 in 1-based map info) is the first pixel's corner
    assert transform @ (0, 0) == pytest.approx((724522.127, 4074620.759))
    height, width = sample['image'].shape[1:]
    path = tmp_path / 'prediction.tif'
    with rasterio.open(
        path,
        'w',
        driver='GTiff',
        width=width,
        height=height,
        count=3,
        dtype='float32',
        crs=sample['crs'],
        transform=transform,
    ) as dst:
        dst.write(sample['image'].numpy())
    back = HyperspectralScene(path)
    assert back.crs == sample['crs']
    assert back.transform == pytest.approx(tuple(sample['transform'].tolist()))
    np.testing.assert_array_equal(back.image, sample['image'].numpy())


def test_datamodule_crops_before_user_transforms() -> None:
    def double(sample: dict[str, Any]) -> dict[str, Any]:
        # Runs after the random crop: sees the patch.
        sample['image'] = sample['image'] * 2
        sample['seen'] = tuple(sample['image'].shape)
        return sample

    dm = HAD100DataModule(root=ROOT, patch_size=4, bands=6, transforms=double)
    dm.setup('fit')
    dataset: Any = dm.train_dataset
    assert dataset[0]['seen'] == (6, 4, 4)
