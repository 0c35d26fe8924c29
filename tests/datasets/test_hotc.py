import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.datamodules.hotc import HOTCDataModule
from torchgeo_ext.datasets.hotc import HOTC, demosaic, parse_boxes
from torchgeo_ext.errors import InvalidInputError

ROOT = Path(__file__).parents[1] / 'data' / 'hotc'
R2020 = ROOT / 'hotc2020'
R2023 = ROOT / 'hotc2023'


@pytest.mark.parametrize('factor', [4, 5, 3])
def test_demosaic_formula_pixel_by_pixel(factor: int) -> None:
    rng = np.random.default_rng(factor)
    frame = rng.integers(0, 65535, size=(factor * 3, factor * 4), dtype=np.uint16)
    cube = demosaic(frame, factor)
    assert cube.shape == (factor * factor, 3, 4)
    assert cube.dtype == np.uint16
    for k in range(factor * factor):
        for i in range(3):
            for j in range(4):
                assert (
                    cube[k, i, j]
                    == frame[factor * i + k // factor, factor * j + k % factor]
                )


def test_demosaic_not_divisible() -> None:
    with pytest.raises(InvalidInputError, match=r'f\.png.*not divisible by the 5 x 5'):
        demosaic(np.zeros((12, 16)), 5, 'f.png')


@pytest.mark.parametrize(
    ('camera', 'factor', 'bands'), [('vis', 4, 16), ('nir', 5, 25), ('rednir', 4, 15)]
)
def test_hsi_frames_match_formula(camera: str, factor: int, bands: int) -> None:
    ds = HOTC(R2023, year=2023, camera=camera, normalize=False)
    path = ds.sequences[0].frames[1]
    frame = np.asarray(Image.open(path))
    assert frame.dtype == np.uint16  # read unchanged, 16 bit
    image = ds.load_frame(0, 1)
    assert image.shape == (bands, 12, 16)
    for k in range(bands):
        expected = frame[k // factor :: factor, k % factor :: factor]
        np.testing.assert_array_equal(image[k].numpy(), expected.astype(np.float32))
    if camera == 'rednir':
        # the dropped 16th band is the empty one
        assert (frame[3::4, 3::4] == 0).all()
        assert (image > 0).all()


def test_normalisation_per_frame() -> None:
    raw = HOTC(R2020, normalize=False)
    norm = HOTC(R2020)
    for i in (0, 3):
        a, b = raw[i]['image'], norm[i]['image']
        torch.testing.assert_close(b, a / a.max())
    # 8-bit sequence: values as stored, not rescaled to 16 bit
    test = HOTC(R2020, split='test', normalize=False)
    assert test[0]['image'].max() <= 255
    assert np.asarray(Image.open(test.sequences[0].frames[0])).dtype == np.uint8


@pytest.mark.parametrize(
    ('kwargs', 'length', 'channels', 'size'),
    [
        ({'root': R2020}, 7, 16, (12, 16)),
        ({'root': R2020, 'split': 'test'}, 3, 16, (12, 16)),
        ({'root': R2020, 'modality': 'falsecolor'}, 7, 3, (12, 16)),
        ({'root': R2020, 'modality': 'rgb'}, 7, 3, (24, 32)),
        ({'root': R2023, 'year': 2023}, 6, 16, (12, 16)),
        ({'root': R2023, 'year': 2023, 'camera': 'nir'}, 6, 25, (12, 16)),
        (
            {'root': R2023, 'year': 2024, 'camera': 'rednir', 'split': 'val'},
            2,
            15,
            (12, 16),
        ),
        (
            {'root': R2023, 'year': 2024, 'modality': 'falsecolor', 'split': 'val'},
            2,
            3,
            (12, 16),
        ),
        ({'root': R2023, 'year': 2023, 'split': 'test'}, 3, 16, (12, 16)),
    ],
)
def test_getitem(
    kwargs: dict[str, object], length: int, channels: int, size: tuple[int, int]
) -> None:
    ds = HOTC(**kwargs)  # type: ignore[arg-type]
    assert len(ds) == length
    sample = ds[length - 1]
    assert sample['image'].dtype == torch.float32
    assert sample['image'].shape == (channels, *size)
    assert 0 <= sample['image'].min()
    assert sample['image'].max() <= 1
    assert sample['bbox_xyxy'].dtype == torch.float32
    assert sample['label'].dtype == torch.int64
    assert sample['sequence'].item() == len(ds.sequences) - 1


def test_boxes_match_target() -> None:
    # the target square is the brightest region: its box must cover it
    ds = HOTC(R2023, year=2023, camera='nir')
    for i in range(len(ds)):
        sample = ds[i]
        x1, y1, x2, y2 = (int(v) for v in sample['bbox_xyxy'][0])
        band0 = sample['image'][0]
        inside = band0[y1:y2, x1:x2]
        assert inside.min() > 0.99
        outside = band0.clone()
        outside[y1:y2, x1:x2] = 0
        assert outside.max() < 0.99


def test_rgb_boxes_in_rgb_pixels() -> None:
    hsi = HOTC(R2020)
    rgb = HOTC(R2020, modality='rgb')
    torch.testing.assert_close(rgb[2]['bbox_xyxy'], hsi[2]['bbox_xyxy'] * 2)


def test_separators_parsed_alike() -> None:
    tab = (R2020 / 'train' / 'ball' / 'HSI' / 'groundtruth_rect.txt').read_text()
    comma = (R2020 / 'train' / 'car' / 'HSI' / 'groundtruth_rect.txt').read_text()
    space = (R2020 / 'test' / 'kangaroo' / 'HSI' / 'groundtruth_rect.txt').read_text()
    assert '\t\n' in tab
    assert ',' in comma
    assert ' ' in space
    ds = HOTC(R2020)
    assert ds.sequences[0].boxes.tolist()[:2] == [[2, 3, 4, 3], [3, 4, 4, 3]]
    assert ds.sequences[1].boxes.tolist()[0] == [8, 6, 4, 3]
    assert HOTC(R2020, split='test').sequences[0].boxes.tolist()[0] == [5, 2, 4, 3]


def test_parse_boxes_tolerance(tmp_path: Path) -> None:
    path = tmp_path / 'groundtruth_rect.txt'
    path.write_text('1\t2\t3\t4\t\n5, 6, 7, 8\n\n 9 10  11 12 \r\nNaN,NaN,NaN,NaN\n')
    boxes = parse_boxes(path)
    assert boxes.shape == (4, 4)
    assert boxes[:3].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert np.isnan(boxes[3]).all()
    path.write_text('1 2 3 4\n1 2 3\n')
    with pytest.raises(InvalidInputError, match=r'groundtruth_rect\.txt.*line 2'):
        parse_boxes(path)


def test_ranking_init_rect() -> None:
    ds = HOTC(R2023, year=2023, split='test')
    seq = ds.sequences[0]
    assert seq.annotation.name == 'init_rect.txt'
    assert seq.boxes.tolist() == [[6, 5, 4, 3]]
    assert ds[0]['bbox_xyxy'].tolist() == [[6, 5, 10, 8]]
    assert ds[1]['bbox_xyxy'].shape == (0, 4)


def test_sequence_view() -> None:
    ds = HOTC(R2020)
    view = ds.sequence(1)
    assert view.name == 'car'
    assert len(view) == 3
    assert view.boxes.shape == (3, 4)
    assert view.init_box.tolist() == [8, 6, 4, 3]
    torch.testing.assert_close(view[2]['image'], ds[6]['image'])
    assert view[-1]['frame'].item() == 2
    with pytest.raises(IndexError):
        view[3]
    with pytest.raises(IndexError):
        ds[7]


def copy(tmp_path: Path, root: Path) -> Path:
    out = tmp_path / root.name
    shutil.copytree(root, out)
    return out


def test_fewer_lines_than_frames(tmp_path: Path) -> None:
    root = copy(tmp_path, R2020)
    gt = root / 'train' / 'car' / 'HSI' / 'groundtruth_rect.txt'
    gt.write_text('\n'.join(gt.read_text().splitlines()[:2]) + '\n')
    with pytest.raises(
        InvalidInputError, match=r'car/HSI/groundtruth_rect\.txt.*2 boxes for 3'
    ):
        HOTC(root)


def test_more_lines_than_frames_warns(tmp_path: Path) -> None:
    root = copy(tmp_path, R2020)
    gt = root / 'train' / 'car' / 'HSI' / 'groundtruth_rect.txt'
    gt.write_text(gt.read_text() + '1,1,2,2\n')
    with pytest.warns(UserWarning, match='4 boxes for 3 frames'):
        ds = HOTC(root)
    assert ds.sequences[1].boxes.shape == (3, 4)


def test_mosaic_not_divisible(tmp_path: Path) -> None:
    root = copy(tmp_path, R2023)
    frame = root / 'training' / 'HSI-NIR' / 'nir-bus' / '0002.png'
    array = np.asarray(Image.open(frame))
    Image.fromarray(array[:-1]).save(frame)
    ds = HOTC(root, year=2023, camera='nir')
    with pytest.raises(InvalidInputError, match=r'0002\.png.*not divisible'):
        ds[1]


def test_missing_annotation(tmp_path: Path) -> None:
    root = copy(tmp_path, R2020)
    (root / 'train' / 'car' / 'HSI' / 'groundtruth_rect.txt').unlink()
    with pytest.raises(InvalidInputError, match='groundtruth_rect'):
        HOTC(root)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match='year'):
        HOTC(R2020, year=2021)
    with pytest.raises(ValueError, match='split'):
        HOTC(R2020, split='val')
    with pytest.raises(ValueError, match='VIS camera only'):
        HOTC(R2020, camera='nir')
    with pytest.raises(ValueError, match='RGB'):
        HOTC(R2023, year=2023, modality='rgb')
    with pytest.raises(ValueError, match='camera'):
        HOTC(R2023, year=2023, camera='swir')
    with pytest.raises(ValueError, match='modality'):
        HOTC(R2023, year=2023, modality='sar')


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match='Dataset not found'):
        HOTC(tmp_path)
    with pytest.raises(DatasetNotFoundError, match='Dataset not found'):
        HOTC(R2020, year=2023)


def test_transforms() -> None:
    def flip(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        sample['image'] = sample['image'].flip(-1)
        return sample

    ds = HOTC(R2020, transforms=flip)
    plain = HOTC(R2020)
    torch.testing.assert_close(ds[0]['image'], plain[0]['image'].flip(-1))


def test_plot() -> None:
    ds = HOTC(R2020)
    sample = ds[0]
    ds.plot(sample, suptitle='test')
    plt.close()
    sample['prediction_bbox_xyxy'] = sample['bbox_xyxy'] + 1
    fig = ds.plot(sample, show_titles=False, rgb_bands=[3, 2, 1])
    assert len(fig.axes[0].patches) == 2
    plt.close()
    fc = HOTC(R2020, modality='falsecolor')
    fc.plot(fc[0])
    plt.close()


def test_datamodule() -> None:
    dm = HOTCDataModule(
        root=R2023,
        year=2023,
        batch_size=2,
        template_size=8,
        search_size=16,
        max_gap=1,
        samples_per_epoch=4,
    )
    dm.setup('fit')
    batch = next(iter(dm.train_dataloader()))
    assert batch['template'].shape == (2, 16, 8, 8)
    assert batch['search'].shape == (2, 16, 16, 16)
    assert batch['search_bbox_xyxy'].shape == (2, 1, 4)
    assert (batch['search_frame'] - batch['template_frame']).abs().max() <= 1
    assert len(dm.train_dataloader()) == 2
    val = next(iter(dm.val_dataloader()))
    assert val['template'].shape[1:] == (16, 8, 8)
    dm.setup('test')
    seqs = dm.test_sequences()
    assert [s.name for s in seqs] == ['vis-kite']


def test_2020_test_folder_named_validation(tmp_path: Path) -> None:
    root = tmp_path / 'hotc2020'
    shutil.copytree(R2020 / 'test', root / 'validation')
    ds = HOTC(root, split='test')
    assert [s.name for s in ds.sequences] == ['kangaroo']


@pytest.mark.parametrize(
    ('root', 'year', 'camera'), [(R2020, 2020, 'vis'), (R2023, 2023, 'nir')]
)
def test_stacked_modalities(root: Path, year: int, camera: str) -> None:
    ds = HOTC(root, year=year, camera=camera, modality=('falsecolor', 'hsi'))
    bands = HOTC.num_bands[camera]
    assert ds.modalities == {'falsecolor': [0, 1, 2], 'hsi': list(range(3, 3 + bands))}
    sample = ds[1]
    assert sample['image'].shape == (3 + bands, 12, 16)
    hsi = HOTC(root, year=year, camera=camera)
    fc = HOTC(root, year=year, camera=camera, modality='falsecolor')
    torch.testing.assert_close(sample['image'][3:], hsi[1]['image'])
    torch.testing.assert_close(sample['image'][:3], fc[1]['image'])
    torch.testing.assert_close(sample['bbox_xyxy'], fc[1]['bbox_xyxy'])
    ds.plot(sample)
    plt.close()


def test_stacked_modalities_size_mismatch() -> None:
    ds = HOTC(R2020, modality=['hsi', 'rgb'])
    with pytest.raises(InvalidInputError, match=r'RGB/0001\.jpg.*cannot stack'):
        ds[0]
    with pytest.raises(ValueError, match='invalid modality'):
        HOTC(R2020, modality=['hsi', 'hsi'])


def test_stacked_modalities_missing_partner(tmp_path: Path) -> None:
    root = copy(tmp_path, R2023)
    shutil.rmtree(root / 'training' / 'HSI-VIS-FalseColor' / 'vis-duck')
    with pytest.raises(InvalidInputError, match="'vis-duck' has no 'falsecolor'"):
        HOTC(root, year=2023, modality=('hsi', 'falsecolor'))
    (root / 'training' / 'HSI-VIS-FalseColor' / 'vis-bus' / '0003.jpg').unlink()
    shutil.rmtree(root / 'training' / 'HSI-VIS' / 'vis-duck')
    with pytest.raises(InvalidInputError, match='2 falsecolor frames, 3'):
        HOTC(root, year=2023, modality=('hsi', 'falsecolor'))
