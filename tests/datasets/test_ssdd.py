"""Tests of the SSDD dataset in torchgeo_ext.datasets.ssdd."""

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.ssdd import SSDD
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.ops.obb import poly_to_xyxy

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'ssdd')
VOC = os.path.join(ROOT, 'BBox_SSDD', 'voc_style')

pytestmark = pytest.mark.filterwarnings('ignore:SSDD. :UserWarning')


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / 'ssdd'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('*.py'))
    return root


class TestSSDD:
    @pytest.mark.parametrize(
        ('split', 'length'),
        [('train', 4), ('test', 3), ('test_inshore', 1), ('test_offshore', 2)],
    )
    @pytest.mark.parametrize('orientation', ['horizontal', 'oriented'])
    def test_getitem(self, split: str, length: int, orientation: str) -> None:
        ds = SSDD(ROOT, split=split, bbox_orientation=orientation)  # type: ignore[arg-type]
        assert len(ds) == length
        for sample in (ds[i] for i in range(len(ds))):
            image = sample['image']
            assert image.dtype == torch.float32
            assert image.ndim == 3
            assert image.shape[0] == 1
            n = len(sample['label'])
            assert n > 0
            assert sample['label'].dtype == torch.int64
            assert (sample['label'] == 0).all()
            assert sample['bbox_xyxy'].shape == (n, 4)
            assert sample['bbox_xyxy'].dtype == torch.float32
            if orientation == 'oriented':
                assert sample['bbox'].shape == (n, 8)
                torch.testing.assert_close(
                    sample['bbox_xyxy'], poly_to_xyxy(sample['bbox'])
                )
            else:
                assert 'bbox' not in sample
        assert ds.modalities == {'sar': [0]}
        assert ds.classes == ['ship']

    def test_image_is_the_first_band(self) -> None:
        ds = SSDD(ROOT)
        path = os.path.join(VOC, 'JPEGImages_train', '000002.jpg')
        grey = np.asarray(Image.open(path))[..., 0]
        assert torch.equal(ds[0]['image'][0], torch.from_numpy(grey).float())
        assert ds[0]['image'].shape == (1, 64, 96)
        assert SSDD(ROOT, dtype='uint8')[0]['image'].dtype == torch.uint8

    def test_boxes_are_the_files(self) -> None:
        ds = SSDD(ROOT, split='test_inshore')
        sample = ds[0]
        # 000001.xml: two ships, xmin ymin xmax ymax as written
        tree = ET.parse(os.path.join(VOC, 'Annotations_test_inshore', '000001.xml'))
        expected = [
            [float(b.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax')]  # type: ignore[arg-type]
            for b in tree.iter('bndbox')
        ]
        assert sample['bbox_xyxy'].tolist() == expected

    def test_inshore_offshore_partition_test(self) -> None:
        test = SSDD(ROOT, split='test').stems
        parts = (
            SSDD(ROOT, split='test_inshore').stems
            + SSDD(ROOT, split='test_offshore').stems
        )
        assert sorted(parts) == test
        # the official rule: test image numbers end in 1 or 9
        assert all(stem[-1] in '19' for stem in test)
        assert not any(stem[-1] in '19' for stem in SSDD(ROOT).stems)

    @pytest.mark.parametrize('orientation', ['horizontal', 'oriented'])
    def test_clipped_and_dropped(self, orientation: str) -> None:
        with pytest.warns(UserWarning, match=r'SSDD: skipped 1 objects.*outside_image'):
            ds = SSDD(ROOT, bbox_orientation=orientation)  # type: ignore[arg-type]
        variant = 'BBox_SSDD' if orientation == 'horizontal' else 'RBox_SSDD'
        key = os.path.join(
            ROOT, variant, 'voc_style', 'Annotations_train', '000003.xml'
        )
        assert ds.skipped == {key: {'outside_image': 1}}
        assert ds.repaired == {key: {'clipped_to_image': 1}}
        sample = ds[1]
        # the ship crossing the left border (x -5..9) is clipped at 0
        assert [0.0, 27.0, 9.0, 33.0] in sample['bbox_xyxy'].tolist()
        assert sample['bbox_xyxy'].min() >= 0
        if orientation == 'oriented':
            assert sample['bbox'][:, 0::2].min() >= 0

    def test_plot(self) -> None:
        ds = SSDD(ROOT, bbox_orientation='oriented')
        sample = ds[0]
        fig = ds.plot(sample)
        assert len(fig.axes) == 1
        plt.close(fig)
        sample['prediction_bbox'] = sample['bbox']
        sample['prediction_label'] = sample['label']
        sample['prediction_score'] = torch.rand(len(sample['label']))
        fig = ds.plot(sample, suptitle='pred')
        assert len(fig.axes) == 2
        plt.close(fig)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match=r'Dataset not found'):
            SSDD(tmp_path)
        (tmp_path / 'BBox_SSDD' / 'voc_style' / 'JPEGImages_train').mkdir(parents=True)
        with pytest.raises(DatasetNotFoundError):
            SSDD(tmp_path)

    @pytest.mark.parametrize(
        'kwargs',
        [
            {'split': 'val'},
            {'split': 'inshore'},
            {'bbox_orientation': 'obb'},
            {'dtype': 'float16'},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r'must'):
            SSDD(ROOT, **kwargs)  # type: ignore[arg-type]

    def test_missing_annotation(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        notes = root / 'BBox_SSDD' / 'voc_style' / 'Annotations_test'
        os.remove(notes / '000009.xml')
        with pytest.raises(MissingInputError, match=r'000009.xml: no annotation file'):
            SSDD(root, split='test')

    def test_malformed_xml(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'RBox_SSDD' / 'voc_style' / 'Annotations_test' / '000011.xml'
        path.write_text(path.read_text()[:-30])
        with pytest.raises(InvalidInputError, match=r'000011.xml: malformed XML'):
            SSDD(root, split='test', bbox_orientation='oriented')
        path.write_text('')  # an empty file
        with pytest.raises(InvalidInputError, match=r'000011.xml: malformed XML'):
            SSDD(root, split='test', bbox_orientation='oriented')

    def test_unknown_name_is_counted(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'BBox_SSDD' / 'voc_style' / 'Annotations_test' / '000011.xml'
        path.write_text(
            path.read_text().replace('<name>ship</name>', '<name>boat</name>', 1)
        )
        with pytest.warns(UserWarning, match=r'unknown_name \(boat\): 1'):
            ds = SSDD(root, split='test')
        assert ds.skipped == {str(path): {'unknown_name (boat)': 1}}

    def test_corrupt_image(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'BBox_SSDD' / 'voc_style' / 'JPEGImages_test' / '000009.jpg'
        path.write_bytes(b'not a jpeg')
        with pytest.raises(InvalidInputError, match=r'000009.jpg: cannot read image'):
            SSDD(root, split='test')

    def test_16_bit_images(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        images = root / 'BBox_SSDD' / 'voc_style' / 'JPEGImages_test'
        values = (np.arange(112 * 80, dtype=np.uint16) * 7).reshape(112, 80)
        os.remove(images / '000001.jpg')
        Image.fromarray(values).save(images / '000001.png')
        ds = SSDD(root, split='test')
        assert ds.stems[0] == '000001'
        image = ds[0]['image']
        assert image.dtype == torch.float32
        assert torch.equal(image[0], torch.from_numpy(values.astype(np.float32)))
        with pytest.raises(InvalidInputError, match=r'000001.png: .*16-bit.*uint8'):
            SSDD(root, split='test', dtype='uint8')[0]
