import math
import os

import kornia.augmentation as K
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader

from torchgeo_ext.datamodules.detection import (
    DetectionAugmentation,
    collate_detection,
    default_train_augmentation,
    transform_corners,
)
from torchgeo_ext.datamodules.dronevehicle import DroneVehicleDataModule
from torchgeo_ext.datamodules.vedai import SuperResolutionPair, VEDAIDataModule
from torchgeo_ext.datasets.dronevehicle import DroneVehicle
from torchgeo_ext.datasets.vedai import VEDAI
from torchgeo_ext.ops.obb import poly_to_xyxy

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data')

pytestmark = pytest.mark.filterwarnings(
    'ignore:VEDAI. :UserWarning', 'ignore:DroneVehicle. :UserWarning'
)


def synthetic_batch(size: tuple[int, int] = (32, 32), hr: bool = False) -> dict:  # type: ignore[type-arg]
    """Batch of 6 images with one or two bright rectangles each.

    Band 0-2 (RGB) and band 3 (IR) hold the objects with different values, so
    a transformation applied differently to the modalities would show.
    """
    h, w = size
    image = torch.zeros(6, 4, h, w)
    boxes, labels = [], []
    for i in range(6):
        x0, y0 = 2 + 2 * i, 3 + i
        b = [[x0, y0, x0 + 6, y0 + 3]]
        if i % 2:
            b.append([w - 9, h - 7, w - 4, h - 2])
        for x_0, y_0, x_1, y_1 in b:
            image[i, :3, y_0:y_1, x_0:x_1] = 200
            image[i, 3, y_0:y_1, x_0:x_1] = 120
        boxes.append(torch.tensor(b, dtype=torch.float32))
        labels.append(torch.arange(len(b)))
    batch = {'image': image, 'bbox_xyxy': boxes, 'label': labels}
    if hr:
        batch['image_hr'] = F.interpolate(image, scale_factor=2, mode='nearest')
    return batch


def object_envelopes(mask: Tensor, boxes: Tensor) -> list[list[int]]:
    """Envelope of the foreground pixels inside each (slightly grown) box."""
    out = []
    for x0, y0, x1, y1 in boxes.round().int().tolist():
        sub = torch.zeros_like(mask)
        sub[max(y0 - 1, 0) : y1 + 1, max(x0 - 1, 0) : x1 + 1] = True
        ys, xs = torch.nonzero(mask & sub, as_tuple=True)
        out.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
    return out


class TestCollate:
    def test_collate(self) -> None:
        samples = [
            {
                'image': torch.rand(4, 8, 8),
                'bbox_xyxy': torch.rand(n, 4).double(),
                'bbox': torch.rand(n, 8),
                'label': torch.zeros(n, dtype=torch.int64),
                'image_hr': torch.rand(4, 16, 16),
                'name': f'{n}',
            }
            for n in (0, 3)
        ]
        batch = collate_detection(samples)
        assert batch['image'].shape == (2, 4, 8, 8)
        assert batch['image_hr'].shape == (2, 4, 16, 16)
        assert [b.shape for b in batch['bbox_xyxy']] == [(0, 4), (3, 4)]
        assert all(b.dtype == torch.float32 for b in batch['bbox_xyxy'])
        assert [b.shape for b in batch['bbox']] == [(0, 8), (3, 8)]
        assert [len(x) for x in batch['label']] == [0, 3]
        assert batch['name'] == ['0', '3']


class TestAugmentationGeometry:
    @pytest.mark.parametrize(
        'aug',
        [
            K.RandomHorizontalFlip(p=1.0),
            K.RandomVerticalFlip(p=1.0),
            K.RandomRotation90(times=(1, 1), p=1.0),
            K.RandomRotation90(times=(2, 2), p=1.0),
            K.RandomRotation90(times=(3, 3), p=1.0),
        ],
        ids=['hflip', 'vflip', 'rot90', 'rot180', 'rot270'],
    )
    def test_boxes_follow_objects(self, aug: K.GeometricAugmentationBase2D) -> None:
        batch = synthetic_batch(hr=True)
        out = DetectionAugmentation(aug)(batch)
        assert out['image'].max() <= 1.0  # normalised by 255
        for i in range(6):
            rgb = out['image'][i, 0] > 0.5
            ir = out['image'][i, 3] > 0.3
            # both modalities transformed identically
            assert torch.equal(rgb, ir)
            # the boxes sit exactly on the objects
            env = object_envelopes(rgb, out['bbox_xyxy'][i])
            assert env == out['bbox_xyxy'][i].round().int().tolist()
            assert torch.equal(out['label'][i], batch['label'][i])
            # the super-resolution target moved the same way
            hr = out['image_hr'][i, 0] > 0.5
            assert torch.equal(hr[::2, ::2], rgb)
        # the transformation did something
        assert not all(
            torch.equal(a, b)
            for a, b in zip(out['bbox_xyxy'], batch['bbox_xyxy'], strict=True)
        )

    def test_flip_formula(self) -> None:
        batch = synthetic_batch(size=(20, 30))
        out = DetectionAugmentation(K.RandomHorizontalFlip(p=1.0))(batch)
        for before, after in zip(batch['bbox_xyxy'], out['bbox_xyxy'], strict=True):
            expected = torch.stack(
                [30 - before[:, 2], before[:, 1], 30 - before[:, 0], before[:, 3]], 1
            )
            torch.testing.assert_close(after, expected)

    def test_random_mix_is_consistent(self) -> None:
        torch.manual_seed(0)
        aug = default_train_augmentation(square=True)
        for _ in range(3):
            batch = synthetic_batch()
            out = aug(batch)
            for i in range(6):
                mask = out['image'][i, 0] > 0.5
                assert torch.equal(mask, out['image'][i, 3] > 0.3)
                env = object_envelopes(mask, out['bbox_xyxy'][i])
                assert env == out['bbox_xyxy'][i].round().int().tolist()

    def test_oriented_rotation(self) -> None:
        # rotating by 30 degrees: oriented corners rotate exactly, keep their
        # shape, and their centre stays on the object
        batch = synthetic_batch()
        from torchgeo_ext.datasets.detection import xyxy_to_corners

        batch['bbox'] = [xyxy_to_corners(b) for b in batch['bbox_xyxy']]
        aug = DetectionAugmentation(K.RandomRotation(degrees=(30, 30), p=1.0))
        out = aug(batch)
        for i in range(6):
            before = batch['bbox'][i].reshape(-1, 4, 2)
            after = out['bbox'][i].reshape(-1, 4, 2)
            side = lambda p: (p[:, 1] - p[:, 0]).norm(dim=-1)
            torch.testing.assert_close(side(after), side(before), atol=1e-4, rtol=0)
            edge = after[:, 1] - after[:, 0]
            angle = torch.rad2deg(torch.atan2(edge[:, 1], edge[:, 0])).abs()
            torch.testing.assert_close(
                angle, torch.full_like(angle, 30.0), atol=1e-3, rtol=0
            )
            centre = after.mean(dim=1).round().long()
            for cx, cy in centre.tolist():
                assert out['image'][i, 0, cy, cx] > 0.5
            # the axis-aligned box is the clipped envelope of the oriented one
            torch.testing.assert_close(
                out['bbox_xyxy'][i], poly_to_xyxy(out['bbox'][i]).clamp(0, 32)
            )
        assert math.isclose(float(out['image'].max()), 200 / 255, rel_tol=1e-5)

    def test_boxes_leaving_the_image_are_dropped(self) -> None:
        batch = synthetic_batch()
        aug = DetectionAugmentation(
            K.RandomAffine(degrees=0, translate=(0.9, 0.9), p=1.0), min_size=1.0
        )
        torch.manual_seed(1)
        out = aug(batch)
        kept = [len(b) for b in out['bbox_xyxy']]
        assert kept == [len(x) for x in out['label']]
        assert sum(kept) < sum(len(b) for b in batch['bbox_xyxy'])
        for b in out['bbox_xyxy']:
            assert (b >= 0).all()
            assert (b <= 32).all()

    def test_normalise_only(self) -> None:
        batch = synthetic_batch()
        out = DetectionAugmentation()(batch)
        torch.testing.assert_close(out['image'], batch['image'] / 255)
        assert out['bbox_xyxy'] is batch['bbox_xyxy']

    def test_transform_corners_identity(self) -> None:
        corners = torch.rand(5, 8) * 10
        torch.testing.assert_close(transform_corners(corners, torch.eye(3)), corners)


class TestSuperResolutionPair:
    def test_pair(self) -> None:
        sample = {
            'image': torch.arange(16.0).reshape(1, 4, 4).repeat(4, 1, 1),
            'bbox_xyxy': torch.tensor([[0.0, 0.0, 4.0, 2.0]]),
            'bbox': torch.tensor([[0.0, 0.0, 4.0, 0.0, 4.0, 2.0, 0.0, 2.0]]),
            'label': torch.tensor([0]),
        }
        out = SuperResolutionPair(2)(sample)
        assert out['image'].shape == (4, 2, 2)
        assert out['image_hr'] is sample['image']
        # area downsampling = mean of 2 x 2 blocks
        assert out['image'][0].tolist() == [[2.5, 4.5], [10.5, 12.5]]
        assert out['bbox_xyxy'].tolist() == [[0.0, 0.0, 2.0, 1.0]]
        assert out['bbox'].tolist() == [[0.0, 0.0, 2.0, 0.0, 2.0, 1.0, 0.0, 1.0]]


class TestVEDAIDataModule:
    def test_batches(self) -> None:
        dm = VEDAIDataModule(os.path.join(DATA, 'vedai'), batch_size=2)
        dm.setup('fit')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 4, 64, 64)
        assert len(batch['bbox_xyxy']) == 2
        assert len(batch['label']) == 2
        assert batch['bbox_xyxy'][0].shape[1] == 4
        out = dm.train_aug(batch)  # type: ignore[misc]
        assert out['image'].max() <= 1
        assert [len(b) for b in out['bbox_xyxy']] == [len(b) for b in batch['label']]
        assert len(dm.val_dataloader()) == 1  # val = the fold's test ids
        dm.setup('test')
        assert len(dm.test_dataset) == 2  # type: ignore[arg-type]
        dm.setup('predict')
        batch = next(iter(dm.predict_dataloader()))
        assert batch['image'].shape == (2, 4, 64, 64)

    def test_super_resolution(self) -> None:
        root = os.path.join(DATA, 'vedai')
        dm = VEDAIDataModule(root, batch_size=2, super_resolution=True)
        dm.setup('fit')
        batch = next(iter(dm.val_dataloader()))
        assert batch['image'].shape == (2, 4, 64, 64)
        assert batch['image_hr'].shape == (2, 4, 128, 128)
        # boxes are in the detector input's coordinates
        hi = VEDAI(root, split='test', resolution=1024)
        for i in range(2):
            torch.testing.assert_close(batch['bbox_xyxy'][i], hi[i]['bbox_xyxy'] / 2)
            torch.testing.assert_close(
                batch['image'][i], F.avg_pool2d(hi[i]['image'][None], 2)[0]
            )
        out = dm.train_aug(batch)  # type: ignore[misc]
        assert out['image_hr'].shape == (2, 4, 128, 128)
        with pytest.raises(ValueError, match='super_resolution'):
            VEDAIDataModule(root, resolution=1024, super_resolution=True)

    def test_oriented_and_fold(self) -> None:
        dm = VEDAIDataModule(
            os.path.join(DATA, 'vedai'),
            fold=2,
            batch_size=2,
            bbox_orientation='oriented',
            classes='original',
            augment=False,
        )
        assert dm.train_aug is None
        dm.setup('validate')
        batch = next(iter(dm.val_dataloader()))
        assert batch['bbox'][0].shape[1] == 8
        assert dm.val_dataset.ids == ['00000000', '00000001']  # type: ignore[union-attr]


class TestDroneVehicleDataModule:
    def test_batches(self) -> None:
        dm = DroneVehicleDataModule(
            os.path.join(DATA, 'dronevehicle'), batch_size=2, num_workers=0
        )
        dm.setup('fit')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 4, 512, 640)
        assert [b.shape[1] for b in batch['bbox']] == [8, 8]
        assert [b.shape[1] for b in batch['bbox_xyxy']] == [4, 4]
        torch.manual_seed(0)
        out = dm.train_aug(batch)  # type: ignore[misc]
        assert out['image'].shape == (2, 4, 512, 640)
        # flips keep every object inside the frame
        assert [len(b) for b in out['bbox']] == [len(b) for b in batch['bbox']]
        for before, after in zip(batch['bbox_xyxy'], out['bbox_xyxy'], strict=True):
            area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            torch.testing.assert_close(area(after), area(before))
        assert len(dm.val_dataloader()) == 2
        dm.setup('test')
        dm.setup('predict')
        assert len(dm.predict_dataset) == 3  # type: ignore[arg-type]

    def test_dota_layout(self) -> None:
        dm = DroneVehicleDataModule(
            os.path.join(DATA, 'dronevehicle', 'dota'),
            batch_size=2,
            bbox_orientation='horizontal',
            val_split='test',
        )
        dm.setup('fit')
        assert len(dm.val_dataset) == 2  # type: ignore[arg-type]
        dm.setup('test')
        batch = next(iter(dm.test_dataloader()))
        assert batch['image'].shape == (2, 4, 512, 640)
        assert 'bbox' not in batch


class TestBatchedDecoding:
    def test_getitems_matches_getitem(self) -> None:
        ds = VEDAI(os.path.join(DATA, 'vedai'), bbox_orientation='oriented')
        samples = ds.__getitems__([3, 0, 4])
        for index, sample in zip([3, 0, 4], samples, strict=True):
            single = ds[index]
            assert torch.equal(sample['image'], single['image'])
            assert torch.equal(sample['bbox'], single['bbox'])
            assert torch.equal(sample['label'], single['label'])

    def test_collate_hands_over_the_buffer(self) -> None:
        ds = VEDAI(os.path.join(DATA, 'vedai'))
        samples = ds.__getitems__([0, 1, 2])
        batch = collate_detection(samples)
        assert batch['image'].data_ptr() == samples[0]['image'].data_ptr()
        for k in range(3):
            assert torch.equal(batch['image'][k], ds[k]['image'])
        # separately decoded samples, or a part of a buffer, get stacked
        separate = collate_detection([ds[0], ds[1]])
        assert separate['image'].data_ptr() != ds[0]['image'].data_ptr()
        part = collate_detection(samples[:2])
        assert part['image'].shape == (2, 4, 64, 64)
        assert part['image'].data_ptr() != samples[0]['image'].data_ptr()
        assert torch.equal(part['image'], batch['image'][:2])

    def test_mixed_sizes(self) -> None:
        root = os.path.join(DATA, 'dronevehicle')
        ds = DroneVehicle(root, split='test', crop_border=False)
        cropped = DroneVehicle(root, split='test')
        ds._crop[1] = True  # one sample cropped: sizes differ within the batch
        samples = ds.__getitems__([0, 1])
        assert samples[0]['image'].shape == (4, 712, 840)
        assert torch.equal(samples[1]['image'], cropped[1]['image'])
        batch = collate_detection(samples)
        assert isinstance(batch['image'], list)

    @pytest.mark.filterwarnings('ignore:This process .* is multi-threaded')
    def test_worker_process(self) -> None:
        ds = DroneVehicle(os.path.join(DATA, 'dronevehicle'), split='val')
        loader = DataLoader(
            ds, batch_size=2, num_workers=1, collate_fn=collate_detection
        )
        batches = list(loader)
        assert [len(b['image']) for b in batches] == [2, 1]
        assert batches[0]['image'].is_shared()
        assert torch.equal(batches[1]['image'][0], ds[2]['image'])
        assert torch.equal(batches[0]['bbox'][1], ds[1]['bbox'])


class _Probe(LightningModule):
    """Records the batches Lightning hands to the steps (after the augmentations)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[dict] = []  # type: ignore[type-arg]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:  # type: ignore[type-arg]
        self.seen.append(batch)
        return (self.weight**2).sum()

    def validation_step(self, batch: dict, batch_idx: int) -> None:  # type: ignore[type-arg]
        self.seen.append(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings('ignore::UserWarning', 'ignore::DeprecationWarning')
def test_lightning_fit_applies_augmentations() -> None:
    dm = VEDAIDataModule(
        os.path.join(DATA, 'vedai'), batch_size=2, super_resolution=True
    )
    probe = _Probe()
    trainer = Trainer(
        accelerator='cpu',
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(probe, datamodule=dm)
    assert len(probe.seen) == 3
    for batch in probe.seen:
        assert batch['image'].shape == (2, 4, 64, 64)
        assert batch['image_hr'].shape == (2, 4, 128, 128)
        assert 0 <= batch['image'].min() <= batch['image'].max() <= 1
        assert isinstance(batch['bbox_xyxy'], list)
        assert [len(b) for b in batch['bbox_xyxy']] == [len(x) for x in batch['label']]
