import os
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datasets.vedai import VEDAI
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.ops.obb import poly_to_xyxy

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'vedai')

pytestmark = pytest.mark.filterwarnings('ignore:VEDAI. :UserWarning')


def copy_root(tmp_path: Path) -> Path:
    root = tmp_path / 'vedai'
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns('*.py'))
    return root


def raw_objects(path: str) -> list[list[str]]:
    with open(path) as f:
        return [line.split() for line in f if line.split()]


class TestVEDAI:
    def test_getitem(self) -> None:
        ds = VEDAI(ROOT)
        sample = ds[0]
        assert sample['image'].dtype == torch.float32
        assert sample['image'].shape == (4, 64, 64)
        assert sample['label'].dtype == torch.int64
        assert sample['bbox_xyxy'].dtype == torch.float32
        assert sample['bbox_xyxy'].shape == (len(sample['label']), 4)
        assert 'bbox' not in sample
        assert ds.modalities == {'rgb': [0, 1, 2], 'ir': [3]}
        assert 1 < sample['image'].max() <= 255

    def test_ir_is_first_channel(self) -> None:
        from PIL import Image

        ds = VEDAI(ROOT, modalities=('ir', 'rgb'))
        sample = ds[0]
        assert ds.modalities == {'ir': [0], 'rgb': [1, 2, 3]}
        ir = torch.from_numpy(
            __import__('numpy').array(
                Image.open(os.path.join(ROOT, 'Vehicules512', f'{ds.ids[0]}_ir.png'))
            )
        )
        assert torch.equal(sample['image'][0], ir[..., 0].float())
        rgb_first = VEDAI(ROOT)[0]['image'][:3]
        assert torch.equal(sample['image'][1:], rgb_first)
        assert VEDAI(ROOT, modalities=('ir',))[0]['image'].shape == (1, 64, 64)

    @pytest.mark.parametrize(
        ('split', 'fold', 'ids'),
        [
            ('train', 1, [f'{i:08d}' for i in range(5)]),
            ('test', 1, ['00000005', '00000006']),
            ('train', 2, [f'{i:08d}' for i in range(2, 7)]),
            ('test', 2, ['00000000', '00000001']),
        ],
    )
    def test_splits_folds(self, split: str, fold: int, ids: list[str]) -> None:
        ds = VEDAI(ROOT, split=split, fold=fold)  # type: ignore[arg-type]
        assert ds.ids == ids
        assert len(ds) == len(ids)

    def test_resolution_1024(self) -> None:
        # folds files only exist in Annotations512: the loader finds them there
        lo = VEDAI(ROOT, resolution=512, bbox_orientation='oriented')
        hi = VEDAI(ROOT, resolution=1024, bbox_orientation='oriented')
        assert hi.ids == lo.ids
        s_lo, s_hi = lo[2], hi[2]
        assert s_hi['image'].shape == (4, 128, 128)
        assert torch.equal(s_hi['label'], s_lo['label'])
        torch.testing.assert_close(s_hi['bbox'], 2 * s_lo['bbox'], atol=1.0, rtol=0)

    def test_oriented(self) -> None:
        ds = VEDAI(ROOT, bbox_orientation='oriented')
        for index in range(len(ds)):
            sample = ds[index]
            assert sample['bbox'].shape == (len(sample['label']), 8)
            envelope = poly_to_xyxy(sample['bbox']).clamp(0, 64)
            torch.testing.assert_close(envelope, sample['bbox_xyxy'])

    def test_corner_order(self) -> None:
        # per-image files list x1..x4 then y1..y4; bbox is x1 y1 x2 y2 ...
        ds = VEDAI(ROOT, classes='original', bbox_orientation='oriented')
        rows = raw_objects(os.path.join(ROOT, 'Annotations512', '00000000.txt'))
        expected = torch.tensor(
            [[float(v) for pair in zip(r[6:10], r[10:14]) for v in pair] for r in rows]
        )
        torch.testing.assert_close(ds[0]['bbox'], expected)

    def test_class_maps(self) -> None:
        original = VEDAI(ROOT, classes='original', fold=2, split='train')
        superyolo = VEDAI(ROOT, classes='superyolo', fold=2, split='train')
        assert len(original.classes) == 11
        assert superyolo.classes == [
            'car',
            'pickup',
            'camping car',
            'truck',
            'other',
            'tractor',
            'boat',
            'van',
        ]
        for index, image_id in enumerate(original.ids):
            path = os.path.join(ROOT, 'Annotations512', f'{image_id}.txt')
            if not os.path.exists(path):
                continue
            ids = [int(r[3]) for r in raw_objects(path)]
            got = original[index]['label'].tolist()
            assert got == [VEDAI.original_ids.index(i) for i in ids]
            kept = [VEDAI.superyolo_map[i] for i in ids if i in VEDAI.superyolo_map]
            assert superyolo[index]['label'].tolist() == kept
        assert original.skipped == {}

    def test_superyolo_drops_are_counted(self) -> None:
        with pytest.warns(UserWarning, match=r'skipped 3 objects .*motorcycle'):
            ds = VEDAI(ROOT)
        key = os.path.join(ROOT, 'Annotations512', '00000003.txt')
        assert ds.skipped[key] == {
            'not_in_superyolo (plane)': 1,
            'not_in_superyolo (bus)': 1,
        }

    def test_border_crossing_clipped(self) -> None:
        ds = VEDAI(ROOT, bbox_orientation='oriented')
        key = os.path.join(ROOT, 'Annotations512', '00000001.txt')
        assert ds.repaired[key] == {'clipped_to_image': 1}
        sample = ds[1]
        assert sample['bbox'][:, 0::2].max() > 64  # oriented corners not clipped
        assert sample['bbox_xyxy'][:, 2].max() == 64

    def test_trailing_whitespace_fixture(self) -> None:
        with open(os.path.join(ROOT, 'Annotations512', '00000001.txt')) as f:
            text = f.read()
        assert ' \t\n' in text
        assert text.endswith('\n\n')

    def test_combined_file_fallback(self, tmp_path: Path) -> None:
        # 00000005 has no per-image file in the fake data
        ds = VEDAI(ROOT, split='test', classes='original', bbox_orientation='oriented')
        assert len(ds[0]['label']) == 3
        # removing a per-image file gives the same objects from annotation512.txt
        root = copy_root(tmp_path)
        os.remove(root / 'Annotations512' / '00000000.txt')
        a = VEDAI(ROOT, classes='original', bbox_orientation='oriented')[0]
        b = VEDAI(root, classes='original', bbox_orientation='oriented')[0]
        assert torch.equal(a['label'], b['label'])
        torch.testing.assert_close(a['bbox'], b['bbox'])

    def test_transforms(self) -> None:
        def flip(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            sample['image'] = sample['image'].flip(-1)
            return sample

        ds = VEDAI(ROOT, transforms=flip)
        assert torch.equal(ds[0]['image'], VEDAI(ROOT)[0]['image'].flip(-1))

    def test_plot(self) -> None:
        ds = VEDAI(ROOT, bbox_orientation='oriented')
        sample = ds[0]
        fig = ds.plot(sample, suptitle='test')
        assert len(fig.axes) == 2
        plt.close(fig)
        sample['prediction_bbox_xyxy'] = sample['bbox_xyxy'] + 1
        sample['prediction_label'] = sample['label']
        sample['prediction_score'] = torch.full((len(sample['label']),), 0.5)
        fig = ds.plot(sample, show_titles=False)
        assert len(fig.axes) == 4
        plt.close(fig)

    def test_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(DatasetNotFoundError, match=r'Dataset not found'):
            VEDAI(tmp_path)

    @pytest.mark.parametrize(
        'kwargs',
        [
            {'split': 'val'},
            {'fold': 11},
            {'resolution': 256},
            {'modalities': ('rgb', 'nir')},
            {'modalities': ()},
            {'classes': 'dota'},
            {'bbox_orientation': 'rotated'},
        ],
    )
    def test_invalid_arguments(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ValueError, match=r'must|unknown'):
            VEDAI(ROOT, **kwargs)  # type: ignore[arg-type]

    def test_missing_partner(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'Vehicules512' / '00000002_ir.png')
        with pytest.raises(MissingInputError, match=r'00000002_ir.png.*no ir file'):
            VEDAI(root)
        # without the IR modality the dataset loads
        assert len(VEDAI(root, modalities=('rgb',))) == 5

    def test_unreadable_image(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        (root / 'Vehicules512' / '00000002_co.png').write_bytes(b'not a png')
        with pytest.raises(InvalidInputError, match=r'00000002_co.png'):
            VEDAI(root)

    def test_corrupt_image_data(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'Vehicules512' / '00000002_co.png'
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # header intact, data truncated
        ds = VEDAI(root)
        with pytest.raises(InvalidInputError, match=r'cannot decode'):
            ds[2]

    def test_malformed_line(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'Annotations512' / '00000002.txt'
        with open(path, 'a') as f:
            f.write('1 2 3 4 5\n')
        with pytest.raises(
            InvalidInputError, match=r'00000002.txt: line 5: expected 14'
        ):
            VEDAI(root)

    def test_non_numeric(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'Annotations512' / '00000002.txt'
        path.write_text('1 2 0.1 1 1 0 a b c d 1 2 3 4\n')
        with pytest.raises(InvalidInputError, match=r'line 1: non-numeric'):
            VEDAI(root)

    def test_unknown_class(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        path = root / 'Annotations512' / '00000002.txt'
        path.write_text('10 10 0.1 3 1 0 5 15 15 5 8 8 12 12\n')
        with pytest.raises(InvalidInputError, match=r'line 1: unknown class id'):
            VEDAI(root)

    def test_malformed_combined_file(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        with open(root / 'Annotations512' / 'annotation512.txt', 'a') as f:
            f.write('00000009 1 2 3\n')
        with pytest.raises(InvalidInputError, match=r'expected 15 columns'):
            VEDAI(root, split='test')

    def test_no_annotations(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        os.remove(root / 'Annotations512' / 'annotation512.txt')
        VEDAI(root)  # train ids all have per-image files
        with pytest.raises(MissingInputError, match=r'00000005.txt.*no annotation'):
            VEDAI(root, split='test')

    def test_missing_folds(self, tmp_path: Path) -> None:
        with pytest.raises(MissingInputError, match=r'fold03.txt'):
            VEDAI(ROOT, fold=3)

    def test_bad_fold_line(self, tmp_path: Path) -> None:
        root = copy_root(tmp_path)
        with open(root / 'Annotations512' / 'fold01.txt', 'a') as f:
            f.write('image7\n')
        with pytest.raises(InvalidInputError, match=r'line 6: expected an image id'):
            VEDAI(root)

    def test_partner_size_mismatch(self, tmp_path: Path) -> None:
        from PIL import Image

        root = copy_root(tmp_path)
        Image.new('RGB', (32, 32)).save(root / 'Vehicules512' / '00000002_ir.png')
        with pytest.raises(InvalidInputError, match='modalities differ in size'):
            VEDAI(root)

    def test_sixteen_bit_image(self, tmp_path: Path) -> None:
        import numpy as np
        from PIL import Image

        root = copy_root(tmp_path)
        path = root / 'Vehicules512' / '00000002_ir.png'
        Image.fromarray(np.zeros((64, 64), dtype=np.uint16)).save(path)
        ds = VEDAI(root)
        with pytest.raises(InvalidInputError, match='expected an 8-bit image'):
            ds[2]
