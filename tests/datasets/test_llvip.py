import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.llvip import LLVIP
from torchgeo_ext.errors import InvalidInputError, MissingInputError

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'llvip')

pytestmark = pytest.mark.filterwarnings('ignore:LLVIP. :UserWarning')


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / 'llvip'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('*.py'))
    return root


def xml_boxes(stem: str) -> list[list[float]]:
    """The person boxes written in an annotation file, in file order."""
    import xml.etree.ElementTree as ET

    root = ET.parse(os.path.join(ROOT, 'Annotations', stem + '.xml')).getroot()
    return [
        [
            float(obj.findtext(f'bndbox/{k}') or 'nan')
            for k in ('xmin', 'ymin', 'xmax', 'ymax')
        ]
        for obj in root.iter('object')
        if obj.findtext('name') == 'person'
    ]


class TestLLVIP:
    @pytest.mark.parametrize(('split', 'length'), [('train', 3), ('test', 2)])
    def test_getitem(self, split: str, length: int) -> None:
        ds = LLVIP(ROOT, split=split)  # type: ignore[arg-type]
        assert len(ds) == length
        sample = ds[0]
        assert sample['image'].dtype == torch.float32
        assert sample['image'].shape == (4, 1024, 1280)
        n = len(sample['label'])
        assert n > 0
        assert sample['label'].dtype == torch.int64
        assert torch.all(sample['label'] == 0)
        assert sample['bbox_xyxy'].shape == (n, 4)
        assert sample['bbox_xyxy'].dtype == torch.float32
        assert 'bbox' not in sample
        assert ds.modalities == {'rgb': [0, 1, 2], 'ir': [3]}
        assert ds.classes == ['person']

    def test_boxes_are_the_files(self) -> None:
        ds = LLVIP(ROOT, split='test')
        for index, stem in enumerate(ds.stems):
            expected = torch.tensor(xml_boxes(stem))
            torch.testing.assert_close(ds[index]['bbox_xyxy'], expected)

    def test_people_are_warm_in_the_infrared(self) -> None:
        sample = LLVIP(ROOT, split='test')[0]
        x0, y0, x1, y1 = (int(v) for v in sample['bbox_xyxy'][0])
        ir = sample['image'][3]
        inside = ir[y0 + 5 : y1 - 5, x0 + 5 : x1 - 5].mean()
        assert inside > ir.mean() + 50

    def test_modalities(self) -> None:
        ds = LLVIP(ROOT, modalities=('ir',))
        sample = ds[0]
        assert sample['image'].shape == (1, 1024, 1280)
        ir = np.array(Image.open(os.path.join(ROOT, 'infrared', 'train', '010001.jpg')))
        assert torch.equal(sample['image'][0], torch.from_numpy(ir[..., 0]).float())
        both = LLVIP(ROOT, modalities=('ir', 'rgb'))
        assert both.modalities == {'ir': [0], 'rgb': [1, 2, 3]}
        assert torch.equal(both[0]['image'][0], sample['image'][0])

    def test_uint8(self) -> None:
        a = LLVIP(ROOT, dtype='uint8')[1]
        b = LLVIP(ROOT)[1]
        assert a['image'].dtype == torch.uint8
        assert torch.equal(a['image'].float(), b['image'])

    def test_quirks_counted(self) -> None:
        with pytest.warns(UserWarning, match=r'LLVIP: skipped 5 objects in 2 files'):
            ds = LLVIP(ROOT)
        first = os.path.join(ROOT, 'Annotations', '010001.xml')
        second = os.path.join(ROOT, 'Annotations', '010002.xml')
        assert ds.skipped[first] == {'outside_image': 1}
        assert ds.repaired[first] == {'clipped_to_image': 1}
        assert ds.skipped[second] == {
            'no_geometry': 1,
            'incomplete_geometry': 1,
            'unknown_name (car)': 1,
            'empty_box': 1,
        }
        # the box past the right edge is clipped to the frame
        assert [1240.0, 400.0, 1280.0, 640.0] in ds[0]['bbox_xyxy'].tolist()
        assert LLVIP(ROOT, split='test').skipped == {}

    def test_plot(self) -> None:
        ds = LLVIP(ROOT)
        sample = ds[0]
        fig = ds.plot(sample)
        assert len(fig.axes) == 2
        plt.close(fig)
        sample['prediction_bbox_xyxy'] = sample['bbox_xyxy']
        sample['prediction_label'] = sample['label']
        sample['prediction_score'] = torch.rand(len(sample['label']))
        fig = ds.plot(sample, suptitle='pred')
        assert len(fig.axes) == 4
        plt.close(fig)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match=r'Dataset not found'):
            LLVIP(tmp_path)
        (tmp_path / 'visible' / 'train').mkdir(parents=True)
        with pytest.raises(DatasetNotFoundError):
            LLVIP(tmp_path)

    @pytest.mark.parametrize(
        'kwargs',
        [
            {'split': 'val'},
            {'modalities': ('rgb', 'rgb')},
            {'modalities': ('thermal',)},
            {'dtype': 'float16'},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r'must|unknown'):
            LLVIP(ROOT, **kwargs)  # type: ignore[arg-type]

    def test_missing_partner(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'infrared' / 'test' / '190005.jpg')
        with pytest.raises(
            MissingInputError, match=r'190005.jpg: image 190005 has no ir file'
        ):
            LLVIP(root, split='test')
        assert len(LLVIP(root, split='test', modalities=('rgb',))) == 2

    def test_missing_annotation(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'Annotations' / '190005.xml')
        with pytest.raises(MissingInputError, match=r'190005.xml: no annotation file'):
            LLVIP(root, split='test')

    def test_malformed_xml(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'Annotations' / '190005.xml').write_text('<annotation><object>')
        with pytest.raises(InvalidInputError, match=r'190005\.xml: malformed XML'):
            LLVIP(root, split='test')

    def test_non_numeric_coordinate(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'Annotations' / '190005.xml').write_text(
            '<annotation><object><name>person</name><bndbox><xmin>a</xmin>'
            '<ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox></object></annotation>'
        )
        with pytest.raises(InvalidInputError, match=r'object 1: non-numeric'):
            LLVIP(root, split='test')

    def test_sizes_differ(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        Image.new('RGB', (640, 512)).save(root / 'infrared' / 'test' / '190004.jpg')
        with pytest.raises(InvalidInputError, match=r'modalities differ in size'):
            LLVIP(root, split='test')

    def test_truncated_image(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'visible' / 'test' / '190005.jpg'
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
        ds = LLVIP(root, split='test')
        with pytest.raises(InvalidInputError, match=r'190005.jpg: cannot decode'):
            ds[1]
