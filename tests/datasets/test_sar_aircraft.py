"""Tests of the SAR-AIRcraft-1.0 dataset in torchgeo_ext.datasets.sar_aircraft."""

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.detection import xyxy_to_corners
from torchgeo_ext.datasets.sar_aircraft import SARAircraft
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'sar_aircraft')

pytestmark = pytest.mark.filterwarnings('ignore:SARAircraft. :UserWarning')


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / 'sar_aircraft'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('*.py'))
    return root


def expected_objects(image_id: str) -> list[tuple[str, list[float]]]:
    tree = ET.parse(os.path.join(ROOT, 'Annotations', f'{image_id}.xml'))
    return [
        (
            obj.findtext('name') or '',
            [
                float(obj.findtext(f'bndbox/{k}') or 'nan')
                for k in ('xmin', 'ymin', 'xmax', 'ymax')
            ],
        )
        for obj in tree.iter('object')
    ]


class TestSARAircraft:
    @pytest.mark.parametrize(
        ('split', 'length'), [('train', 4), ('val', 2), ('test', 3)]
    )
    def test_getitem(self, split: str, length: int) -> None:
        ds = SARAircraft(ROOT, split=split)  # type: ignore[arg-type]
        assert len(ds) == length
        sizes = set()
        for i in range(len(ds)):
            sample = ds[i]
            assert sample['image'].dtype == torch.float32
            assert sample['image'].shape[0] == 1
            sizes.add(tuple(sample['image'].shape))
            n = len(sample['label'])
            assert n > 0
            assert sample['label'].dtype == torch.int64
            assert sample['bbox_xyxy'].shape == (n, 4)
            assert 'bbox' not in sample
        assert len(sizes) > 1  # images of several sizes
        assert ds.modalities == {'sar': [0]}

    def test_classes_and_boxes_are_the_files(self) -> None:
        assert SARAircraft.classes == [
            'A220', 'A320/321', 'A330', 'ARJ21', 'Boeing737', 'Boeing787', 'other'
        ]  # fmt: skip
        ds = SARAircraft(ROOT, split='test')
        assert ds.ids == ['7', '8', '9']  # the list ends with a blank line
        for i, image_id in enumerate(ds.ids):
            objects = expected_objects(image_id)
            sample = ds[i]
            assert [ds.classes[k] for k in sample['label']] == [n for n, _ in objects]
            assert sample['bbox_xyxy'].tolist() == [box for _, box in objects]

    def test_oriented_adds_the_corners(self) -> None:
        sample = SARAircraft(ROOT, split='val', bbox_orientation='oriented')[0]
        torch.testing.assert_close(sample['bbox'], xyxy_to_corners(sample['bbox_xyxy']))

    def test_unknown_type_and_border(self) -> None:
        with pytest.warns(UserWarning, match=r'unknown_name \(Boeing747\): 1'):
            ds = SARAircraft(ROOT)
        key = os.path.join(ROOT, 'Annotations', '2.xml')
        assert ds.skipped == {key: {'unknown_name (Boeing747)': 1}}
        assert ds.repaired == {key: {'clipped_to_image': 1}}
        sample = ds[1]
        assert len(sample['label']) == len(expected_objects('2')) - 1
        assert sample['bbox_xyxy'][:, 2].max() == 100  # clipped to the 100 px image

    def test_plot(self) -> None:
        ds = SARAircraft(ROOT)
        sample = ds[1]
        fig = ds.plot(sample, suptitle='SAR-AIRcraft')
        assert len(fig.axes) == 1
        plt.close(fig)
        sample['prediction_bbox_xyxy'] = sample['bbox_xyxy']
        sample['prediction_label'] = sample['label']
        sample['prediction_score'] = torch.ones(len(sample['label']))
        fig = ds.plot(sample)
        assert len(fig.axes) == 2
        plt.close(fig)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match=r'Dataset not found'):
            SARAircraft(tmp_path)

    @pytest.mark.parametrize(
        'kwargs', [{'split': 'trainval'}, {'bbox_orientation': 'obb'}, {'dtype': 'x'}]
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r'must'):
            SARAircraft(ROOT, **kwargs)  # type: ignore[arg-type]

    def test_missing_files(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'ImageSets' / 'Main' / 'val.txt')
        with pytest.raises(MissingInputError, match=r'val.txt: no list of the val'):
            SARAircraft(root, split='val')
        os.remove(root / 'Annotations' / '8.xml')
        with pytest.raises(MissingInputError, match=r'8.xml: no annotation file'):
            SARAircraft(root, split='test')
        os.remove(root / 'JPEGImages' / '1.jpg')
        with pytest.raises(MissingInputError, match=r'1.jpg: image 1 of the train'):
            SARAircraft(root)

    def test_malformed_files(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'ImageSets' / 'Main' / 'val.txt').write_text('5\n6 7\n')
        with pytest.raises(InvalidInputError, match=r'val.txt: line 2: expected one'):
            SARAircraft(root, split='val')
        path = root / 'Annotations' / '9.xml'
        path.write_text(path.read_text().replace('</annotation>', ''))
        with pytest.raises(InvalidInputError, match=r'9.xml: malformed XML'):
            SARAircraft(root, split='test')
        path.write_text(
            (Path(ROOT) / 'Annotations' / '9.xml')
            .read_text()
            .replace('<xmin>', '<xmin>a', 1)
        )
        with pytest.raises(InvalidInputError, match=r'9.xml: object 1: non-numeric'):
            SARAircraft(root, split='test')
