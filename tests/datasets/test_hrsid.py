"""Tests of the HRSID dataset in torchgeo_ext.datasets.hrsid."""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
import shapely
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.hrsid import HRSID
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.ops.obb import poly_area, poly_to_xyxy

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'hrsid')
TRAIN = os.path.join(ROOT, 'annotations', 'train2017.json')
TEST = os.path.join(ROOT, 'annotations', 'test2017.json')

pytestmark = pytest.mark.filterwarnings('ignore:HRSID. :UserWarning')


def load(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)  # type: ignore[no-any-return]


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / 'hrsid'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('*.py'))
    return root


class TestHRSID:
    @pytest.mark.parametrize(('split', 'length'), [('train', 3), ('test', 2)])
    @pytest.mark.parametrize('orientation', ['horizontal', 'oriented'])
    def test_getitem(self, split: str, length: int, orientation: str) -> None:
        ds = HRSID(ROOT, split=split, bbox_orientation=orientation)  # type: ignore[arg-type]
        assert len(ds) == length
        for i in range(len(ds)):
            sample = ds[i]
            assert sample['image'].dtype == torch.float32
            assert sample['image'].shape == (1, 96, 96)
            n = len(sample['label'])
            assert sample['label'].dtype == torch.int64
            assert (sample['label'] == 0).all()
            assert sample['bbox_xyxy'].shape == (n, 4)
            assert sample['bbox_xyxy'].dtype == torch.float32
            assert ('bbox' in sample) == (orientation == 'oriented')
        assert ds.classes == ['ship']
        assert ds.modalities == {'sar': [0]}
        assert HRSID(ROOT, dtype='uint8')[0]['image'].dtype == torch.uint8

    def test_boxes_are_the_coco_boxes(self) -> None:
        coco = load(TEST)
        ds = HRSID(ROOT, split='test')
        assert ds.file_names == [entry['file_name'] for entry in coco['images']]
        for i, entry in enumerate(coco['images']):
            expected = [
                [x, y, x + w, y + h]
                for x, y, w, h in (
                    a['bbox']
                    for a in coco['annotations']
                    if a['image_id'] == entry['id']
                )
            ]
            torch.testing.assert_close(ds[i]['bbox_xyxy'], torch.tensor(expected))

    def test_tile_without_ships(self) -> None:
        sample = HRSID(ROOT)[1]
        assert sample['label'].shape == (0,)
        assert sample['bbox_xyxy'].shape == (0, 4)

    def test_oriented_boxes_are_minimum_rectangles_of_the_polygons(self) -> None:
        coco = load(TEST)
        ds = HRSID(ROOT, split='test', bbox_orientation='oriented')
        sample = ds[1]
        polygons = [
            a['segmentation'][0]
            for a in coco['annotations']
            if a['image_id'] == coco['images'][1]['id']
        ]
        assert len(polygons) == len(sample['bbox']) == 2
        for corners, points in zip(sample['bbox'], polygons, strict=True):
            outline = shapely.Polygon(
                list(zip(points[0::2], points[1::2], strict=True))
            )
            rectangle = shapely.Polygon(corners.reshape(4, 2).tolist())
            # the rectangle holds the polygon and has the minimum area
            assert rectangle.buffer(1e-3).contains(outline)
            expected = shapely.minimum_rotated_rectangle(outline).area
            assert float(poly_area(corners[None])[0]) == pytest.approx(
                expected, rel=1e-4
            )
        torch.testing.assert_close(sample['bbox_xyxy'], poly_to_xyxy(sample['bbox']))

    def test_missing_polygon_uses_the_box(self) -> None:
        with pytest.warns(UserWarning, match=r'HRSID: repaired 1 .*no_polygon: 1'):
            ds = HRSID(ROOT, split='test', bbox_orientation='oriented')
        assert ds.repaired == {TEST: {'no_polygon': 1}}
        coco = load(TEST)
        x, y, w, h = coco['annotations'][0]['bbox']
        assert ds[0]['bbox'][0].tolist() == pytest.approx(
            [x, y, x + w, y, x + w, y + h, x, y + h]
        )

    def test_border_ship_is_clipped(self) -> None:
        ds = HRSID(ROOT)
        assert ds.repaired == {TRAIN: {'clipped_to_image': 1}}
        assert ds[2]['bbox_xyxy'][:, 2].max() == 96

    def test_plot(self) -> None:
        ds = HRSID(ROOT, bbox_orientation='oriented')
        sample = ds[0]
        fig = ds.plot(sample)
        assert len(fig.axes) == 1
        plt.close(fig)
        sample['prediction_bbox_xyxy'] = sample['bbox_xyxy']
        sample['prediction_label'] = sample['label']
        fig = ds.plot(sample)
        assert len(fig.axes) == 2
        plt.close(fig)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match=r'Dataset not found'):
            HRSID(tmp_path)
        (tmp_path / 'JPEGImages').mkdir()
        with pytest.raises(DatasetNotFoundError):
            HRSID(tmp_path)

    @pytest.mark.parametrize(
        'kwargs', [{'split': 'val'}, {'bbox_orientation': 'obb'}, {'dtype': 'int'}]
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r'must'):
            HRSID(ROOT, **kwargs)  # type: ignore[arg-type]

    def test_malformed_json(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'annotations' / 'test2017.json'
        path.write_text(path.read_text()[:-5])
        with pytest.raises(InvalidInputError, match=r'test2017.json: malformed JSON'):
            HRSID(root, split='test')
        path.write_text(json.dumps({'images': []}))
        with pytest.raises(InvalidInputError, match=r"test2017.json: no 'annotations'"):
            HRSID(root, split='test')

    @pytest.mark.parametrize(
        ('field', 'value', 'message'),
        [
            ('bbox', [1, 2, 'x', 4], r'annotation \d+ bbox: expected 4 numbers'),
            ('bbox', [1, 2, 3], r'annotation \d+ bbox: expected 4 numbers'),
            ('segmentation', [[1, 2, 3]], r'annotation \d+ segmentation: odd number'),
            (
                'segmentation',
                [['a', 2]],
                r'annotation \d+ segmentation: expected a list',
            ),
        ],
    )
    def test_malformed_annotation(
        self, tmp_path: Path, field: str, value: object, message: str
    ) -> None:
        root = copy_root(tmp_path)
        path = root / 'annotations' / 'test2017.json'
        coco = load(str(path))
        coco['annotations'][-1][field] = value
        path.write_text(json.dumps(coco))
        with pytest.raises(InvalidInputError, match=r'test2017.json: ' + message):
            HRSID(root, split='test', bbox_orientation='oriented')

    def test_crowd_empty_and_unknown_are_counted(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'annotations' / 'test2017.json'
        coco = load(str(path))
        first, second = coco['annotations'][1:3]
        first['iscrowd'] = 1
        second['category_id'] = 7
        coco['annotations'].append(dict(second, category_id=1, bbox=[1, 1, 0, 5]))
        path.write_text(json.dumps(coco))
        with pytest.warns(UserWarning, match=r'skipped 3 objects'):
            ds = HRSID(root, split='test')
        assert ds.skipped == {
            str(path): {'crowd': 1, 'empty_box': 1, 'unknown_name (?)': 1}
        }
        assert len(ds[1]['label']) == 0

    def test_missing_image(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'JPEGImages' / 'P0003_0_800_0_800.jpg')
        with pytest.raises(
            MissingInputError, match=r'P0003_0_800_0_800.jpg: image listed'
        ):
            HRSID(root, split='test')
