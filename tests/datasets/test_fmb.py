import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.fmb import FMB
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = Path(__file__).parents[1] / 'data' / 'fmb'


@pytest.mark.parametrize(('split', 'length'), [('train', 3), ('test', 2)])
def test_splits(split: str, length: int) -> None:
    assert len(FMB(ROOT, split=split)) == length  # type: ignore[arg-type]


def test_getitem_one_and_three_band_infrared() -> None:
    dataset = FMB(ROOT)
    for index in (0, 1):  # the first infrared file has three equal bands
        sample = dataset[index]
        assert sample['image'].shape == (4, 60, 80)
        assert sample['image'].dtype == torch.float32
        assert sample['mask'].shape == (60, 80)
        assert sample['mask'].dtype == torch.int64
        person = sample['mask'] == 8
        assert sample['image'][3][person].mean() > 200
    assert len(FMB.classes) == 15
    assert FMB.classes[0] == 'unlabelled'


def test_plot() -> None:
    dataset = FMB(ROOT, split='test')
    sample = dataset[0]
    sample['prediction'] = sample['mask']
    fig = dataset.plot(sample, suptitle='FMB')
    assert len(fig.axes) == 4
    plt.close(fig)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='split must be one of'):
        FMB(ROOT, split='val')  # type: ignore[arg-type]
    with pytest.raises(DatasetNotFoundError):
        FMB(tmp_path)
    root = tmp_path / 'fmb'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('data.py'))
    Image.new('L', (40, 30)).save(root / 'train' / 'Infrared' / '00002.png')
    dataset = FMB(root)
    with pytest.raises(
        InvalidInputError, match='infrared is 40 x 30, visible is 80 x 60'
    ):
        dataset[1]
    (root / 'train' / 'Infrared' / '00003.png').unlink()
    with pytest.raises(MissingInputError, match=r'00003\.png has no Infrared partner'):
        FMB(root)
