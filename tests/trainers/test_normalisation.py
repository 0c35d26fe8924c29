"""Normalisation recorded by tasks at fit time and applied after loading."""

from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from torchgeo_ext.datamodules.vedai import VEDAIDataModule
from torchgeo_ext.trainers.base import (
    NORMALISATION_CHECKPOINT_KEY,
    PluginTask,
    datamodule_normalisation,
    load_task,
    normalisation_record,
)
from torchgeo_ext.trainers.detection import SuperYOLOTask

OFFSET = [10.0, 20.0, 30.0]
SCALE = [2.0, 4.0, 8.0]


class Pixels(Dataset[dict[str, Tensor]]):
    """Raw uint8-range images and a per-pixel target."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(index)
        image = torch.randint(0, 255, (3, 8, 8), generator=g).float()
        return {'image': image, 'target': image.mean(0, keepdim=True)}


class Data(lightning.LightningDataModule):
    """A data module that normalises after the transfer, and says how."""

    normalisation = {'offset': OFFSET, 'scale': SCALE}

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return DataLoader(Pixels(), batch_size=2)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        offset = torch.tensor(OFFSET).reshape(-1, 1, 1)
        scale = torch.tensor(SCALE).reshape(-1, 1, 1)
        batch['image'] = (batch['image'] - offset) / scale
        return batch


class Regression(PluginTask):
    """A 1 x 1 convolution; its __init__ takes **kwargs like a forwarding subclass."""

    def __init__(self, width: int = 3, **kwargs: Any) -> None:
        super().__init__()

    def configure_models(self) -> None:
        self.model = nn.Conv2d(3, 1, 1)

    def training_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> Tensor:
        return nn.functional.mse_loss(self.model(batch['image']), batch['target'])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=1e-4)


def fit(task: PluginTask, data: lightning.LightningDataModule, path: Path) -> Path:
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(path)
    return path


def test_record_forms() -> None:
    expected = {'offset': [0.0], 'scale': [255.0]}
    assert normalisation_record({'offset': 0, 'scale': 255}) == expected
    assert normalisation_record({'mean': torch.tensor(0), 'std': 255.0}) == expected
    assert normalisation_record(None) is None

    class Form:
        offset = torch.tensor([1.0, 2.0])
        scale = (3.0, 4.0)

    assert normalisation_record(Form()) == {'offset': [1.0, 2.0], 'scale': [3.0, 4.0]}
    with pytest.raises(ValueError, match='positive'):
        normalisation_record({'offset': 0, 'scale': 0})
    with pytest.raises(ValueError, match='offset and scale'):
        normalisation_record({'offset': 0})
    with pytest.raises(ValueError, match='2 offsets but 3 scales'):
        normalisation_record({'offset': [0, 1], 'scale': [1, 2, 3]})
    with pytest.raises(TypeError, match='numbers'):
        normalisation_record({'offset': 'zero', 'scale': 1})


def test_datamodule_normalisation() -> None:
    assert datamodule_normalisation(None) is None
    vedai = VEDAIDataModule(root='unused')
    assert datamodule_normalisation(vedai) == {'offset': [0.0], 'scale': [255.0]}

    class TorchGeoStyle:
        mean = torch.tensor([1.0, 2.0])
        std = torch.tensor([3.0, 4.0])

    assert datamodule_normalisation(TorchGeoStyle()) == {
        'offset': [1.0, 2.0],
        'scale': [3.0, 4.0],
    }


def test_round_trip_through_checkpoint(tmp_path: Path) -> None:
    task = Regression()
    assert task.normalisation is None
    raw = Pixels()[0]['image'][None]
    assert task.normalise(raw) is raw  # nothing recorded: unchanged

    path = fit(task, Data(), tmp_path / 'task.ckpt')
    expected = {'offset': OFFSET, 'scale': SCALE}
    assert task.hparams['normalisation'] == expected
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint[NORMALISATION_CHECKPOINT_KEY] == expected
    # an __init__ taking **kwargs would receive it from the hparams on loading
    assert 'normalisation' not in checkpoint['hyper_parameters']

    loaded: Any = load_task(path)
    assert loaded.normalisation == expected
    assert loaded.hparams['normalisation'] == expected
    normalised = Data().on_after_batch_transfer({'image': raw.clone()}, 0)['image']
    torch.testing.assert_close(loaded.normalise(raw), normalised)
    torch.testing.assert_close(
        loaded.normalise(raw.to(torch.uint8).float()), loaded.normalise(raw)
    )
    with pytest.raises(ValueError, match='4 bands'):
        loaded.normalise(torch.zeros(1, 4, 2, 2))


def test_superyolo_detect_images_applies_record(tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = SuperYOLOTask(
        model='superyolo_early',
        in_channels=3,
        super_resolution=False,
        ema=False,
        score_threshold=0.0,
        max_detections=5,
    )
    task.record_normalisation({'offset': OFFSET, 'scale': SCALE})
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / 'superyolo.ckpt')
    loaded: Any = load_task(tmp_path / 'superyolo.ckpt')
    assert loaded.hparams['normalisation'] == {'offset': OFFSET, 'scale': SCALE}

    raw = torch.randint(0, 255, (1, 3, 32, 32)).float()
    by_hand = (raw - torch.tensor(OFFSET).reshape(-1, 1, 1)) / torch.tensor(
        SCALE
    ).reshape(-1, 1, 1)
    got = loaded.detect_images(raw)[0]
    want = loaded.detect_images(by_hand, normalised=True)[0]
    assert len(got['prediction_score']) == 5
    for key in got:
        torch.testing.assert_close(got[key], want[key])
    # predict_step gets data-module batches: already normalised
    out = loaded.predict_step({'image': by_hand}, 0)
    torch.testing.assert_close(out['prediction_score'][0], want['prediction_score'])


class SeenImages(Regression):
    """Predicts the mean of what it was given, to see the inputs."""

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Any]:
        self.seen = batch['image'].clone()
        return {'prediction': batch['image'].mean(1)}


class OneRaw(Dataset[dict[str, Any]]):
    """One raw georeferenced sample."""

    def __init__(self, image: Tensor) -> None:
        self.image = image

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        transform = torch.tensor([0.25, 0, 5e5, 0, -0.25, 4e6], dtype=torch.float64)
        return {'image': self.image, 'transform': transform, 'crs': 'EPSG:32633'}


def test_prediction_writer_normalises_raw_batches(tmp_path: Path) -> None:
    from torchgeo_ext.export.writer import GeoPredictionWriter

    task = SeenImages()
    task.record_normalisation({'offset': OFFSET, 'scale': SCALE})
    raw = Pixels()[0]['image'][None]

    def predict(writer: GeoPredictionWriter, **kwargs: Any) -> Tensor:
        trainer = lightning.Trainer(
            logger=False, callbacks=[writer], enable_progress_bar=False
        )
        trainer.predict(task, return_predictions=False, **kwargs)
        return task.seen

    options: dict[str, Any] = {'write_rasters': False, 'write_vectors': False}
    loader = DataLoader(OneRaw(raw[0]), batch_size=1)
    # plain loader (raw values): the writer applies the recorded normalisation
    seen = predict(GeoPredictionWriter(tmp_path, **options), dataloaders=loader)
    torch.testing.assert_close(seen, task.normalise(raw))
    # asked not to: the task sees the raw values
    writer = GeoPredictionWriter(tmp_path, normalise_inputs=False, **options)
    torch.testing.assert_close(predict(writer, dataloaders=loader), raw)


def test_vedai_uint8_transport_gives_the_float32_batch() -> None:
    from torchgeo_ext.datamodules.detection import (
        DetectionAugmentation,
        collate_detection,
    )
    from torchgeo_ext.datasets.vedai import VEDAI

    root = Path(__file__).parents[1] / 'data' / 'vedai'
    dm = VEDAIDataModule(root=root)
    assert dm.kwargs['dtype'] == 'uint8'  # what the data module builds
    floats = VEDAI(root)  # the dataset alone keeps the float32 contract
    bytes_ = VEDAI(root, dtype='uint8')
    assert floats[0]['image'].dtype == torch.float32
    assert bytes_[0]['image'].dtype == torch.uint8
    torch.testing.assert_close(bytes_[0]['image'].float(), floats[0]['image'])
    after = DetectionAugmentation()  # what on_after_batch_transfer runs
    batch8 = after(collate_detection(bytes_.__getitems__([0, 1])))
    batch32 = after(collate_detection(floats.__getitems__([0, 1])))
    assert batch8['image'].dtype == torch.float32
    torch.testing.assert_close(batch8['image'], batch32['image'])
    assert float(batch32['image'].max()) <= 1.0
