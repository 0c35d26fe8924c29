"""Tests of the SSDD data module in torchgeo_ext.datamodules.ssdd."""

import os
from typing import Any

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import LightningDataModule

from torchgeo_ext.datamodules.detection import Letterbox
from torchgeo_ext.datamodules.ssdd import SSDDDataModule
from torchgeo_ext.datasets.ssdd import SSDD

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data', 'ssdd')

pytestmark = pytest.mark.filterwarnings('ignore:SSDD. :UserWarning')


class TestSSDDDataModule:
    def test_batches(self) -> None:
        dm = SSDDDataModule(DATA, batch_size=2, patch_size=64)
        dm.setup('fit')
        batch = next(iter(dm.train_dataloader()))
        assert batch['image'].shape == (2, 1, 64, 64)
        assert batch['image'].dtype == torch.uint8  # converted after the transfer
        assert [b.shape[1] for b in batch['bbox_xyxy']] == [4, 4]
        assert 'bbox' not in batch
        out = dm.train_aug(batch)  # type: ignore[misc]
        assert out['image'].dtype == torch.float32
        assert 0 <= out['image'].min() <= out['image'].max() <= 1
        assert [len(b) for b in out['bbox_xyxy']] == [len(b) for b in out['label']]
        assert dm.normalisation == {'offset': [0.0], 'scale': [255.0]}
        assert len(dm.val_dataset) == 3  # type: ignore[arg-type]
        dm.setup('test')
        assert len(dm.test_dataset) == 3  # type: ignore[arg-type]
        dm.setup('predict')
        batch = next(iter(dm.predict_dataloader()))
        assert batch['image'].shape == (2, 1, 64, 64)

    def test_letterbox_scales_boxes_with_the_image(self) -> None:
        dm = SSDDDataModule(
            DATA,
            batch_size=1,
            patch_size=56,
            bbox_orientation='oriented',
            augment=False,
        )
        assert dm.train_aug is None
        dm.setup('validate')
        raw = SSDD(DATA, split='test', bbox_orientation='oriented')
        sample = dm.val_dataset[0]  # type: ignore[index]
        original = raw[0]
        assert sample['image'].shape == (1, 56, 56)
        # 112 x 80 scaled by 56/112 = 0.5 on both axes, padded on the right with 0
        torch.testing.assert_close(sample['bbox'], original['bbox'] * 0.5)
        torch.testing.assert_close(sample['bbox_xyxy'], original['bbox_xyxy'] * 0.5)
        assert (sample['image'][:, :, 40:] == 0).all()
        assert sample['image'][:, :, :40].float().mean() > 0

    def test_letterbox_dtype_and_identity(self) -> None:
        image = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)
        out = Letterbox(4)(
            {'image': image, 'bbox_xyxy': torch.tensor([[0.0, 0, 4, 3]])}
        )
        assert out['image'].dtype == torch.uint8
        assert torch.equal(out['image'][:, :3], image)
        assert (out['image'][:, 3] == 0).all()
        assert out['bbox_xyxy'].tolist() == [[0.0, 0.0, 4.0, 3.0]]
        with pytest.raises(ValueError, match='size must be positive'):
            Letterbox(0)

    def test_splits_and_bit_depth(self) -> None:
        dm = SSDDDataModule(
            DATA,
            batch_size=1,
            val_split='test_offshore',
            test_split='test_inshore',
            bit_depth=16,
        )
        assert dm.normalisation == {'offset': [0.0], 'scale': [65535.0]}
        assert dm.kwargs['dtype'] == 'float32'
        dm.setup('fit')
        assert len(dm.val_dataset) == 2  # type: ignore[arg-type]
        dm.setup('test')
        assert dm.test_dataset.stems == ['000001']  # type: ignore[union-attr]
        with pytest.raises(ValueError, match='bit_depth must be 8 or 16'):
            SSDDDataModule(DATA, bit_depth=12)  # type: ignore[arg-type]

    def test_user_transforms_get_float32_after_the_letterbox(self) -> None:
        seen: list[Any] = []

        def record(sample: dict[str, Any]) -> dict[str, Any]:
            seen.append((sample['image'].dtype, tuple(sample['image'].shape)))
            return sample

        dm = SSDDDataModule(DATA, batch_size=1, patch_size=32, transforms=record)
        dm.setup('validate')
        dm.val_dataset[0]  # type: ignore[index]
        assert seen == [(torch.float32, (1, 32, 32))]


def test_named_in_a_lightning_cli_config(tmp_path: Any) -> None:
    # LightningCLI resolves `data:` with jsonargparse's subclass arguments
    config = {
        'data': {
            'class_path': 'torchgeo_ext.datamodules.SSDDDataModule',
            'init_args': {'root': DATA, 'batch_size': 2, 'patch_size': 64},
        }
    }
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(config))
    parser = ArgumentParser()
    parser.add_subclass_arguments(LightningDataModule, 'data')
    built = parser.instantiate_classes(parser.parse_path(str(path)))
    assert isinstance(built.data, SSDDDataModule)
    assert built.data.patch_size == 64
    assert built.data.kwargs['root'] == DATA
