import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.dronevehicle import DroneVehicle
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.ops.obb import poly_to_xyxy

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'dronevehicle')
DOTA = os.path.join(ROOT, 'dota')

pytestmark = pytest.mark.filterwarnings('ignore:DroneVehicle. :UserWarning')


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / 'dv'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('*.py'))
    return root


class TestDroneVehicle:
    @pytest.mark.parametrize(
        ('split', 'length'), [('train', 4), ('val', 3), ('test', 3)]
    )
    def test_getitem(self, split: str, length: int) -> None:
        ds = DroneVehicle(ROOT, split=split)  # type: ignore[arg-type]
        assert len(ds) == length
        assert ds.layout == 'xml'
        sample = ds[0]
        assert sample['image'].dtype == torch.float32
        assert sample['image'].shape == (4, 512, 640)
        n = len(sample['label'])
        assert sample['label'].dtype == torch.int64
        assert sample['bbox'].shape == (n, 8)
        assert sample['bbox'].dtype == torch.float32
        torch.testing.assert_close(sample['bbox_xyxy'], poly_to_xyxy(sample['bbox']))
        assert ds.modalities == {'rgb': [0, 1, 2], 'ir': [3]}

    def test_horizontal(self) -> None:
        sample = DroneVehicle(ROOT, bbox_orientation='horizontal')[0]
        assert 'bbox' not in sample
        assert sample['bbox_xyxy'].shape == (len(sample['label']), 4)

    def test_modalities(self) -> None:
        ds = DroneVehicle(ROOT, modalities=('ir',))
        sample = ds[0]
        assert sample['image'].shape == (1, 512, 640)
        ir = np.array(Image.open(os.path.join(ROOT, 'train', 'trainimgr', '00001.jpg')))
        expected = torch.from_numpy(ir[100:-100, 100:-100, 0]).float()
        assert torch.equal(sample['image'][0], expected)
        both = DroneVehicle(ROOT, modalities=('ir', 'rgb'))
        assert both.modalities == {'ir': [0], 'rgb': [1, 2, 3]}
        assert torch.equal(both[0]['image'][0], expected)

    def test_border_crop(self) -> None:
        cropped = DroneVehicle(ROOT, split='val')
        full = DroneVehicle(ROOT, split='val', crop_border=False)
        a, b = cropped[1], full[1]
        assert b['image'].shape == (4, 712, 840)
        # the border is white in every band and the content is the crop
        assert b['image'][:, :90].min() >= 235  # (JPEG ringing at the edge)
        assert b['image'][:, :, -90:].min() >= 235
        assert torch.equal(a['image'], b['image'][:, 100:-100, 100:-100])
        torch.testing.assert_close(a['bbox'] + 100, b['bbox'])
        assert torch.equal(a['label'], b['label'])

    def test_border_objects_clipped_or_dropped(self) -> None:
        ds = DroneVehicle(ROOT)
        key = os.path.join(ROOT, 'train', 'trainlabelr', '00003.xml')
        assert ds.skipped[key] == {'outside_image': 1}
        assert ds.repaired[key] == {'clipped_to_image': 1}
        sample = ds[2]
        # the bus at x 80..130 in the bordered frame is clipped to 0..30
        bus = sample['bbox_xyxy'][sample['label'] == 2]
        assert [0.0, 100.0, 30.0, 130.0] in bus.tolist()
        assert sample['bbox_xyxy'][:, 0::2].max() <= 640
        assert sample['bbox_xyxy'][:, 1::2].max() <= 512
        assert sample['bbox_xyxy'].min() >= 0
        # without cropping nothing is outside
        full = DroneVehicle(ROOT, crop_border=False)
        assert key not in full.skipped

    def test_spelling_variants_and_junk(self) -> None:
        with pytest.warns(UserWarning, match=r'skipped 5 objects.*junk_name: 2'):
            ds = DroneVehicle(ROOT)
        key = os.path.join(ROOT, 'train', 'trainlabelr', '00001.xml')
        assert ds.skipped[key] == {'junk_name': 2}
        assert ds.repaired[key] == {
            'renamed (feright car)': 1,
            'renamed (feright_car)': 1,
            'renamed (feright)': 1,
            'renamed (truvk)': 1,
        }
        labels = ds[0]['label'].tolist()
        # three generated objects, then feright car/feright_car/feright, truvk, 'car '
        assert labels[-5:] == [4, 4, 4, 1, 0]

    def test_bndbox_and_missing_geometry(self) -> None:
        ds = DroneVehicle(ROOT)
        key = os.path.join(ROOT, 'train', 'trainlabelr', '00002.xml')
        assert ds.skipped[key] == {'no_geometry': 1, 'incomplete_geometry': 1}
        sample = ds[1]
        assert sample['label'][-1] == 3  # the <bndbox> van
        assert sample['bbox_xyxy'][-1].tolist() == [200.0, 220.0, 250.0, 245.0]
        assert sample['bbox'][-1].tolist() == [200, 220, 250, 220, 250, 245, 200, 245]

    def test_label_source(self) -> None:
        ir = DroneVehicle(ROOT, split='val', label_source='ir')
        rgb = DroneVehicle(ROOT, split='val', label_source='rgb')
        a, b = ir[0], rgb[0]
        # RGB labels of the fake data: the first two of the three generated
        # objects, 2 px shifted (the IR file also has the quirk objects)
        assert len(b['label']) == 2 < len(a['label'])
        torch.testing.assert_close(b['bbox'], a['bbox'][:2] + 2)
        assert rgb.skipped == {}

    def test_dota_layout(self) -> None:
        ds = DroneVehicle(DOTA, split='train')
        assert ds.layout == 'dota'
        assert len(ds) == 3
        sample = ds[0]
        # already 640 x 512: nothing cropped, coordinates untouched
        assert sample['image'].shape == (4, 512, 640)
        with open(os.path.join(DOTA, 'train', 'ir', 'labels', '00001.txt')) as f:
            rows = [line.split() for line in f if line[0].isdigit()]
        expected = torch.tensor([[float(v) for v in r[:8]] for r in rows])
        torch.testing.assert_close(sample['bbox'], expected)
        names = [r[8] for r in rows]
        assert sample['label'].tolist() == [
            4 if n == 'feright_car' else DroneVehicle.classes.index(n) for n in names
        ]
        assert len(DroneVehicle(DOTA, split='test')) == 2

    def test_dota_malformed_line(self, tmp_path: Path) -> None:
        root = tmp_path / 'dota'
        shutil.copytree(DOTA, root)
        with open(root / 'test' / 'ir' / 'labels' / '00004.txt', 'a') as f:
            f.write('1 2 3 4 car\n')
        with pytest.raises(InvalidInputError, match=r'00004.txt: line 6: expected'):
            DroneVehicle(root, split='test')
        (root / 'test' / 'ir' / 'labels' / '00004.txt').write_text(
            '1 2 3 4 5 6 7 x car 0\n'
        )
        with pytest.raises(InvalidInputError, match=r'line 1: non-numeric'):
            DroneVehicle(root, split='test')

    def test_plot(self) -> None:
        ds = DroneVehicle(ROOT)
        sample = ds[0]
        fig = ds.plot(sample)
        assert len(fig.axes) == 2
        plt.close(fig)
        sample['prediction_bbox'] = sample['bbox']
        sample['prediction_label'] = sample['label']
        sample['prediction_score'] = torch.rand(len(sample['label']))
        fig = ds.plot(sample, suptitle='pred')
        assert len(fig.axes) == 4
        plt.close(fig)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match=r'Dataset not found'):
            DroneVehicle(tmp_path)
        (tmp_path / 'train' / 'trainimg').mkdir(parents=True)
        with pytest.raises(DatasetNotFoundError):
            DroneVehicle(tmp_path)

    @pytest.mark.parametrize(
        'kwargs',
        [
            {'split': 'trainval'},
            {'modalities': ('rgb', 'rgb')},
            {'modalities': ('thermal',)},
            {'label_source': 'both'},
            {'bbox_orientation': 'obb'},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r'must|unknown'):
            DroneVehicle(ROOT, **kwargs)  # type: ignore[arg-type]

    def test_missing_partner(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'val' / 'valimgr' / '00006.jpg')
        with pytest.raises(
            MissingInputError, match=r'00006.jpg: image 00006 has no ir'
        ):
            DroneVehicle(root, split='val')
        assert len(DroneVehicle(root, split='val', modalities=('rgb',))) == 3

    def test_missing_label(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'val' / 'vallabelr' / '00006.xml')
        with pytest.raises(MissingInputError, match=r'00006.xml: no ir annotation'):
            DroneVehicle(root, split='val')

    def test_malformed_xml(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'val' / 'vallabelr' / '00006.xml').write_text('<annotation><object>')
        with pytest.raises(InvalidInputError, match=r'00006\.xml: malformed XML'):
            DroneVehicle(root, split='val')

    def test_non_numeric_coordinate(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'val' / 'vallabelr' / '00006.xml').write_text(
            '<annotation><object><name>car</name><bndbox><xmin>a</xmin>'
            '<ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox></object></annotation>'
        )
        with pytest.raises(InvalidInputError, match=r'object 1: non-numeric'):
            DroneVehicle(root, split='val')

    def test_unknown_name_counted(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'val' / 'vallabelr' / '00006.xml'
        path.write_text(
            path.read_text().replace('<name>car</name>', '<name>tank</name>', 1)
        )
        with pytest.warns(UserWarning, match=r'unknown_name \(tank\): 1'):
            ds = DroneVehicle(root, split='val')
        assert ds.skipped[str(path)]['unknown_name (tank)'] == 1

    def test_unreadable_image(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'val' / 'valimg' / '00006.jpg').write_bytes(b'garbage')
        with pytest.raises(InvalidInputError, match=r'00006.jpg: cannot read'):
            DroneVehicle(root, split='val')

    def test_truncated_image(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'val' / 'valimg' / '00006.jpg'
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
        ds = DroneVehicle(root, split='val')
        with pytest.raises(InvalidInputError, match=r'00006.jpg: cannot decode'):
            ds[1]
