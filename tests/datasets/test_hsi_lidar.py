"""Tests for the HSI + LiDAR land-cover datasets (Houston2013, Trento, MUUFL)."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.io
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.houston2013 import Houston2013
from torchgeo_ext.datasets.hsi_lidar import HSILiDARDataset
from torchgeo_ext.datasets.muufl import MUUFL
from torchgeo_ext.datasets.trento import Trento
from torchgeo_ext.errors import InvalidInputError, MissingInputError

DATA = Path('tests/data')
CASES = [
    (Houston2013, DATA / 'houston2013' / 'mat', 144, 1),
    (Houston2013, DATA / 'houston2013' / 'geotiff', 144, 1),
    (Trento, DATA / 'trento' / 'split', 63, 1),
    (MUUFL, DATA / 'muufl' / 'mat', 64, 2),
    (MUUFL, DATA / 'muufl' / 'v73', 64, 2),
]


@pytest.mark.parametrize(
    ('cls', 'root', 'bands', 'lidar'), CASES, ids=[str(c[1]) for c in CASES]
)
@pytest.mark.parametrize('patch_size', [7, 8])
def test_getitem(
    cls: type[HSILiDARDataset], root: Path, bands: int, lidar: int, patch_size: int
) -> None:
    train = cls(root, split='train', patch_size=patch_size)
    test = cls(root, split='test', patch_size=patch_size)
    assert len(train) > 0
    assert len(test) > 0
    sample = train[0]
    assert sample['image'].shape == (bands + lidar, patch_size, patch_size)
    assert sample['image'].dtype == torch.float32
    assert sample['label'].dtype == torch.int64
    assert 0 <= int(sample['label']) < len(cls.classes)
    assert train.modalities['hsi'] == list(range(bands))
    assert train.modalities['lidar'] == list(range(bands, bands + lidar))
    # The labelled pixel sits at patch_size // 2 and equals the scene pixel.
    row, col = int(sample['row']), int(sample['col'])
    c = patch_size // 2
    torch.testing.assert_close(
        sample['image'][:, c, c], torch.from_numpy(train.image[:, row, col])
    )
    assert float(train.image.min()) == 0.0
    assert float(train.image.max()) == 1.0
    # No pixel is in both splits.
    train_pixels = set(zip(train.rows.tolist(), train.cols.tolist(), strict=True))
    test_pixels = set(zip(test.rows.tolist(), test.cols.tolist(), strict=True))
    assert not train_pixels & test_pixels


def test_mat_and_geotiff_releases_agree() -> None:
    mat = Houston2013(DATA / 'houston2013' / 'mat', patch_size=5)
    tif = Houston2013(DATA / 'houston2013' / 'geotiff', patch_size=5)
    assert mat.crs is None
    assert tif.crs == 'EPSG:26915'
    np.testing.assert_allclose(mat.image, tif.image, atol=1e-6)
    np.testing.assert_array_equal(mat.labels, tif.labels)
    assert 'crs' not in mat[0]
    sample = tif[0]
    # The patch transform is shifted to the window's top-left pixel.
    row, col = int(sample['row']), int(sample['col'])
    a, _, c, _, e, f = tif.transform  # type: ignore[misc]
    assert sample['transform'][2] == pytest.approx(c + a * (col - 2))
    assert sample['transform'][5] == pytest.approx(f + e * (row - 2))


def test_v73_matches_v5() -> None:
    v5 = MUUFL(DATA / 'muufl' / 'mat')
    v73 = MUUFL(DATA / 'muufl' / 'v73')
    np.testing.assert_array_equal(v5.image, v73.image)
    np.testing.assert_array_equal(v5.labels, v73.labels)


def test_ground_truth_only_release() -> None:
    root = DATA / 'trento' / 'gt'
    with pytest.raises(InvalidInputError, match='train_per_class'):
        Trento(root)
    train = Trento(root, split='train', train_per_class=5, seed=1)
    test = Trento(root, split='test', train_per_class=5, seed=1)
    counts = np.bincount(train.labels, minlength=6)
    assert (counts == 5).all()
    gt = scipy.io.loadmat(root / 'GT_Trento.mat')['gt_trento']
    assert len(train) + len(test) == int((gt > 0).sum())
    assert train.sources['gt'] == 'GT_Trento.mat:gt_trento'
    again = Trento(root, split='train', train_per_class=5, seed=1)
    np.testing.assert_array_equal(again.rows, train.rows)


def test_normalize_off_keeps_values() -> None:
    ds = Trento(DATA / 'trento' / 'split', normalize=False)
    hsi = scipy.io.loadmat(DATA / 'trento' / 'split' / 'HSI.mat')['HSI']
    np.testing.assert_array_equal(ds.image[:63], hsi.transpose(2, 0, 1))


def test_padding_modes() -> None:
    root = DATA / 'trento' / 'split'
    zero = Trento(root, patch_size=41, padding='constant')
    sym = Trento(root, patch_size=41, padding='symmetric')
    # A 41-pixel patch always reaches outside the 20 x 30 scene.
    assert (zero[0]['image'] == 0).any()
    assert not torch.equal(zero[0]['image'], sym[0]['image'])
    with pytest.raises(ValueError, match='padding'):
        Trento(root, padding='wrap')


def test_scene_and_plot() -> None:
    ds = Houston2013(DATA / 'houston2013' / 'geotiff', split='test', patch_size=5)
    scene = ds.scene()
    assert scene['image'].shape == (145, 20, 30)
    assert scene['mask'].shape == (20, 30)
    assert int((scene['mask'] >= 0).sum()) == len(ds)
    assert scene['crs'] == 'EPSG:26915'
    fig = ds.plot(scene, suptitle='scene')
    plt.close(fig)
    sample = ds[0]
    sample['prediction'] = sample['label']
    fig = ds.plot(sample)
    plt.close(fig)


def test_bad_arguments() -> None:
    root = DATA / 'trento' / 'split'
    with pytest.raises(ValueError, match='split'):
        Trento(root, split='val')
    with pytest.raises(ValueError, match='patch_size'):
        Trento(root, patch_size=0)


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        Trento(tmp_path / 'missing')
    with pytest.raises(DatasetNotFoundError):
        Trento(tmp_path)


def test_missing_lidar(tmp_path: Path) -> None:
    src = DATA / 'trento' / 'split'
    for name in ('HSI.mat', 'TRLabel.mat', 'TSLabel.mat'):
        shutil.copy(src / name, tmp_path)
    with pytest.raises(MissingInputError, match='LIDAR'):
        Trento(tmp_path)


def test_wrong_band_count(tmp_path: Path) -> None:
    src = DATA / 'trento' / 'split'
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    hsi = scipy.io.loadmat(src / 'HSI.mat')['HSI'][..., :10]
    scipy.io.savemat(tmp_path / 'HSI.mat', {'HSI': hsi})
    with pytest.raises(InvalidInputError, match='63 HSI bands'):
        Trento(tmp_path)


def test_size_mismatch_and_bad_labels(tmp_path: Path) -> None:
    src = DATA / 'trento' / 'split'
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    lidar = scipy.io.loadmat(src / 'LiDAR.mat')['LiDAR'][:, :10]
    scipy.io.savemat(tmp_path / 'LiDAR.mat', {'LiDAR': lidar})
    with pytest.raises(InvalidInputError, match='LiDAR is'):
        Trento(tmp_path)
    shutil.copy(src / 'LiDAR.mat', tmp_path)
    labels = scipy.io.loadmat(src / 'TRLabel.mat')['TRLabel'].astype(np.int32)
    labels[0, 0] = 9
    scipy.io.savemat(tmp_path / 'TRLabel.mat', {'TRLabel': labels})
    with pytest.raises(InvalidInputError, match='exceeds the 6 classes'):
        Trento(tmp_path)


def test_corrupt_mat(tmp_path: Path) -> None:
    (tmp_path / 'HSI.mat').write_bytes(b'not a mat file at all' * 10)
    with pytest.raises(InvalidInputError, match=r'HSI\.mat'):
        Trento(tmp_path)


def test_overlapping_splits_are_reported(tmp_path: Path) -> None:
    src = DATA / 'trento' / 'split'
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    train = scipy.io.loadmat(src / 'TRLabel.mat')['TRLabel']
    scipy.io.savemat(tmp_path / 'TSLabel.mat', {'TSLabel': train})
    with pytest.warns(UserWarning, match='both the train and'):
        ds = Trento(tmp_path)
    assert ds.overlap == int((train > 0).sum())
