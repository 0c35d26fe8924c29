"""Run GeoPredictionWriter under Lightning on CPU (helper for tests/export/test_writer.py).

Usage: python tests/export/export_ddp_script.py OUTPUT_DIR DEVICES [STRATEGY]
"""

import sys
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from torchgeo_ext.export.writer import GeoPredictionWriter

CRS = 'EPSG:32633'
NUM_SAMPLES = 5  # odd: the distributed sampler pads one rank with a repeated sample


class TinyGeoDataset(Dataset[dict[str, Any]]):
    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(index)
        image = torch.rand(2, 16, 16, generator=g)
        x0, y0 = 500000.0 + 160.0 * index, 5000000.0
        transform = torch.tensor([10.0, 0.0, x0, 0.0, -10.0, y0], dtype=torch.float64)
        return {'image': image, 'transform': transform, 'crs': CRS}


class TinyTask(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        scores: Tensor = self.conv(batch['image'])
        boxes, labels, confidences = [], [], []
        for img in batch['image']:
            # one box around the brightest pixel of band 0, one per image
            flat = int(img[0].argmax())
            y, x = divmod(flat, img.shape[-1])
            boxes.append(torch.tensor([[x - 1.5, y - 1.5, x + 2.0, y + 2.0]]))
            labels.append(torch.tensor([flat % 2]))
            confidences.append(img[0].max().reshape(1))
        return {
            'prediction': scores,
            'prediction_bbox_xyxy': boxes,
            'prediction_label': labels,
            'prediction_score': confidences,
            'transform': batch['transform'],
            'crs': batch['crs'],
        }


def main() -> None:
    out, devices = sys.argv[1], int(sys.argv[2])
    strategy = sys.argv[3] if len(sys.argv) > 3 else ('ddp' if devices > 1 else 'auto')
    torch.set_num_threads(1)
    writer = GeoPredictionWriter(out, class_names=['even', 'odd', 'other'])
    trainer = pl.Trainer(
        accelerator='cpu',
        devices=devices,
        strategy=strategy,
        callbacks=[writer],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    loader = DataLoader(TinyGeoDataset(), batch_size=2)
    trainer.predict(TinyTask(), loader, return_predictions=False)


if __name__ == '__main__':
    main()
