import os

import pytest
import torch

from torchgeo_ext.datamodules.detection import Downsample
from torchgeo_ext.datamodules.llvip import LLVIPDataModule
from torchgeo_ext.datasets.llvip import LLVIP

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'llvip')

pytestmark = pytest.mark.filterwarnings('ignore:LLVIP. :UserWarning')


def area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


class TestLLVIPDataModule:
    def test_batches(self) -> None:
        dm = LLVIPDataModule(ROOT, batch_size=2)
        dm.setup('fit')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 4, 1024, 1280)
        assert batch['image'].dtype == torch.uint8  # converted after the transfer
        assert [b.shape[1] for b in batch['bbox_xyxy']] == [4, 4]
        torch.manual_seed(0)
        out = dm.train_aug(batch)  # type: ignore[misc]
        assert out['image'].dtype == torch.float32
        assert out['image'].max() <= 1.0
        # flips keep every person inside the frame, with its size
        for before, after in zip(batch['bbox_xyxy'], out['bbox_xyxy'], strict=True):
            torch.testing.assert_close(area(after), area(before))
        assert dm.normalisation == {'offset': [0.0], 'scale': [255.0]}
        assert len(dm.val_dataset) == 2  # type: ignore[arg-type]
        dm.setup('test')
        dm.setup('predict')
        assert len(dm.predict_dataset) == 2  # type: ignore[arg-type]

    def test_downsample(self) -> None:
        dm = LLVIPDataModule(ROOT, batch_size=1, downsample=2, augment=False)
        assert dm.train_aug is None
        dm.setup('validate')
        batch = next(iter(dm.val_dataloader()))
        assert batch['image'].shape == (1, 4, 512, 640)
        full = LLVIP(ROOT, split='test')[0]
        torch.testing.assert_close(batch['bbox_xyxy'][0], full['bbox_xyxy'] / 2)
        # area averaging: the mean of each 2 x 2 block
        block = full['image'][:, :2, :2].mean(dim=(1, 2))
        torch.testing.assert_close(batch['image'][0, :, 0, 0], block)

    def test_user_transforms_run_after_downsampling(self) -> None:
        seen = []

        def record(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            seen.append(tuple(sample['image'].shape))
            return sample

        dm = LLVIPDataModule(ROOT, batch_size=1, downsample=4, transforms=record)
        dm.setup('validate')
        next(iter(dm.val_dataloader()))
        assert seen == [(4, 256, 320)]

    def test_downsample_factor_checked(self) -> None:
        with pytest.raises(ValueError, match='positive integer'):
            Downsample(0)
        with pytest.raises(ValueError, match='positive integer'):
            Downsample(1.5)  # type: ignore[arg-type]
        sample = {'image': torch.ones(1, 4, 4)}
        assert Downsample(1)(sample) is sample
