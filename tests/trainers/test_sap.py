"""Tests for SAP's prior pre-training task."""

from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.models.sap import AnomalyPrior
from torchgeo_ext.trainers.base import load_task
from torchgeo_ext.trainers.sap import SAPPriorTask, load_sap_prior

CONF = Path(__file__).parents[1] / 'conf' / 'sap_had100.yaml'


@pytest.mark.slow
def test_cli_fit_test_predict_and_generalisation(tmp_path: Path) -> None:
    common = ['--config', str(CONF), '--trainer.default_root_dir', str(tmp_path)]
    assert main(['fit', *common]) == 0
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    task = load_task(checkpoint)
    assert isinstance(task, SAPPriorTask)
    assert main(['test', *common, '--ckpt_path', str(checkpoint)]) == 0
    prior = load_sap_prior(checkpoint)
    assert isinstance(prior, AnomalyPrior)
    assert not prior.training
    # Another sensor's band count: the prior is band-count agnostic.
    out = task.predict_step({'image': torch.rand(1, 23, 12, 12)}, 0)
    assert out['prediction'].shape == (1, 12, 12)
    assert torch.isfinite(out['prediction']).all()


def test_training_step_changes_the_prior_and_predict_passes_through() -> None:
    task = SAPPriorTask(model_kwargs={'features': 4}, iterations=3, clusters=2, atoms=4)
    loss = task.training_step({'image': torch.rand(2, 5, 8, 8)}, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in task.model.parameters())
    batch: dict[str, Any] = {
        'image': torch.rand(1, 6, 7, 5),
        'valid_mask': torch.ones(1, 7, 5, dtype=torch.bool),
        'crs': ['EPSG:32611'],
        'transform': torch.tensor([[5.0, 0, 7e5, 0, -5.0, 4e6]], dtype=torch.float64),
    }
    batch['valid_mask'][0, 0, 0] = False
    out = task.predict_step(batch, 0)
    assert out['prediction'].shape == (1, 7, 5)
    assert torch.isnan(out['prediction'][0, 0, 0])
    assert out['crs'] == ['EPSG:32611']


def test_load_sap_prior_refuses_other_checkpoints(tmp_path: Path) -> None:
    from torchgeo_ext.trainers.anomaly import STADTask

    task = STADTask(in_channels=4, model_kwargs={'stages': 1, 'ffn': 8})
    path = tmp_path / 'stad.ckpt'
    import lightning

    trainer = lightning.Trainer(logger=False, accelerator='cpu', max_epochs=0)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    with pytest.raises(InvalidInputError, match='not a SAP prior'):
        load_sap_prior(path)
