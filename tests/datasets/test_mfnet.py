import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.mfnet import MFNet
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = Path(__file__).parents[1] / 'data' / 'mfnet'


@pytest.mark.parametrize(
    ('split', 'length'),
    [('train', 4), ('val', 2), ('test', 2), ('test_day', 1), ('test_night', 1)],
)
def test_splits(split: str, length: int) -> None:
    dataset = MFNet(ROOT, split=split)  # type: ignore[arg-type]
    assert len(dataset) == length


def test_getitem() -> None:
    dataset = MFNet(ROOT, split='val')
    assert dataset.names == ['00005D', '00006N']  # trailing spaces stripped
    sample = dataset[0]
    assert sample['image'].dtype == torch.float32
    assert sample['image'].shape == (4, 48, 64)
    assert sample['mask'].dtype == torch.int64
    assert sample['mask'].shape == (48, 64)
    assert int(sample['mask'].max()) <= 8
    assert dataset.modalities == {'rgb': [0, 1, 2], 'thermal': [3]}
    # the thermal band (4th PNG channel) is where the person is warm
    person = sample['mask'] == 2
    assert sample['image'][3][person].mean() > 200
    assert len(MFNet.classes) == 9


def test_transforms() -> None:
    dataset = MFNet(ROOT, transforms=lambda s: {**s, 'image': s['image'] / 255})
    assert float(dataset[0]['image'].max()) <= 1


def test_plot() -> None:
    dataset = MFNet(ROOT, split='test')
    sample = dataset[1]
    fig = dataset.plot(sample, suptitle='night')
    assert len(fig.axes) == 3
    plt.close(fig)
    sample['prediction'] = sample['mask'].clone()
    fig = dataset.plot(sample, show_titles=False)
    assert len(fig.axes) == 4
    plt.close(fig)


def test_bad_split() -> None:
    with pytest.raises(ValueError, match='split must be one of'):
        MFNet(ROOT, split='night')  # type: ignore[arg-type]


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        MFNet(tmp_path)


def copy(tmp_path: Path) -> Path:
    root = tmp_path / 'mfnet'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('data.py'))
    return root


def test_missing_file(tmp_path: Path) -> None:
    root = copy(tmp_path)
    (root / 'labels' / '00002D.png').unlink()
    with pytest.raises(MissingInputError, match=r'train\.txt line 2 but missing'):
        MFNet(root)


def test_corrupt_image(tmp_path: Path) -> None:
    root = copy(tmp_path)
    Image.new('RGB', (64, 48)).save(root / 'images' / '00001D.png')
    dataset = MFNet(root)
    with pytest.raises(InvalidInputError, match='expected a 4-band PNG'):
        dataset[0]
    (root / 'images' / '00002D.png').write_bytes(b'broken')
    with pytest.raises(InvalidInputError, match='cannot read image'):
        dataset[1]


def test_bad_labels(tmp_path: Path) -> None:
    root = copy(tmp_path)
    Image.fromarray(np.full((48, 64), 12, dtype=np.uint8)).save(
        root / 'labels' / '00001D.png'
    )
    Image.new('RGB', (64, 48)).save(root / 'labels' / '00002D.png')
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(
        root / 'labels' / '00003N.png'
    )
    dataset = MFNet(root)
    with pytest.raises(InvalidInputError, match='class id 12 found'):
        dataset[0]
    with pytest.raises(InvalidInputError, match='colour-coded'):
        dataset[1]
    with pytest.raises(InvalidInputError, match='label is 10 x 10, image is 64 x 48'):
        dataset[2]
