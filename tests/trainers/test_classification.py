"""Tests for the patch classification task (MIViT, M3amba)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchmetrics import MetricCollection

from torchgeo_ext.cli import main
from torchgeo_ext.datasets.houston2013 import Houston2013
from torchgeo_ext.datasets.muufl import MUUFL
from torchgeo_ext.trainers.base import load_task, task_class_path
from torchgeo_ext.trainers.classification import PatchClassificationTask

from .conftest import assert_gradient_step_lowers

CONF = Path('tests/conf')
HOUSTON = 'tests/data/houston2013/mat'
GEOTIFF = 'tests/data/houston2013/geotiff'
MUUFL_ROOT = 'tests/data/muufl/mat'
CONFIGS = sorted(CONF.glob('mivit_*.yaml')) + sorted(CONF.glob('m3amba_*.yaml'))


def _check_learns(
    task: PatchClassificationTask, batch: dict[str, torch.Tensor]
) -> None:
    task.train()
    assert_gradient_step_lowers(
        lambda: task.compute_loss(task(batch['image']), batch['label'])['loss'],
        [p for p in task.parameters() if p.requires_grad],
    )


def test_mivit_loss_trains() -> None:
    torch.manual_seed(0)
    data = Houston2013(HOUSTON, patch_size=8)
    batch = next(iter(DataLoader(data, batch_size=32, shuffle=False)))
    task = PatchClassificationTask(model='mivit_tiny', hsi_bands=144, num_classes=15)
    out = task(batch['image'])
    terms = task.compute_loss(out, batch['label'])
    # Every MIViT term is present.
    assert {'focal', 'aux', 'distillation', 'reconstruction', 'mi'} <= set(terms)
    _check_learns(task, batch)


def test_m3amba_loss_trains() -> None:
    torch.manual_seed(0)
    data = MUUFL(MUUFL_ROOT, patch_size=5, padding='constant')
    batch = next(iter(DataLoader(data, batch_size=32, shuffle=False)))
    task = PatchClassificationTask(
        model='m3amba_tiny',
        hsi_bands=64,
        lidar_bands=2,
        num_classes=11,
        class_names=list(MUUFL.classes),
        focal_gamma=0.0,
        mi_weight=0.0,
        distillation_weight=0.0,
    )
    terms = task.compute_loss(task(batch['image']), batch['label'])
    assert set(terms) == {'focal', 'aux', 'distillation', 'loss'}
    _check_learns(task, batch)


def test_metrics_match_definitions() -> None:
    task = PatchClassificationTask(model='mivit_tiny', hsi_bands=144, num_classes=3)
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    pred = torch.tensor([0, 0, 1, 1, 0, 2, 2, 2, 1, 2])
    metrics: MetricCollection = task.test_metrics  # type: ignore[assignment]
    metrics.update(pred, target)
    values = metrics.compute()
    confusion = np.zeros((3, 3))
    for t, p in zip(target.tolist(), pred.tolist(), strict=True):
        confusion[t, p] += 1
    oa = np.trace(confusion) / confusion.sum()
    per_class = np.diag(confusion) / confusion.sum(1)
    pe = (confusion.sum(0) * confusion.sum(1)).sum() / confusion.sum() ** 2
    assert float(values['test_OA']) == pytest.approx(oa)
    assert float(values['test_AA']) == pytest.approx(per_class.mean())
    assert float(values['test_kappa']) == pytest.approx((oa - pe) / (1 - pe))
    np.testing.assert_allclose(values['test_accuracy'].numpy(), per_class, rtol=1e-6)


def test_prediction_heads_and_predict_step() -> None:
    data = Houston2013(HOUSTON, patch_size=8)
    batch = next(iter(DataLoader(data, batch_size=4)))
    task = PatchClassificationTask(
        model='mivit_tiny', hsi_bands=144, num_classes=15, prediction_head='hsi'
    ).eval()
    out = task.predict_step(batch, 0)
    assert out['prediction_label'].shape == (4,)
    assert ((out['prediction_score'] > 0) & (out['prediction_score'] <= 1)).all()
    assert torch.equal(out['row'], batch['row'])
    geo = next(iter(DataLoader(Houston2013(GEOTIFF, patch_size=8), batch_size=2)))
    out = task.predict_step(geo, 0)
    assert out['crs'] == ['EPSG:26915', 'EPSG:26915']
    assert out['transform'].shape == (2, 6)
    task.hparams['prediction_head'] = 'nope'
    with pytest.raises(ValueError, match='prediction_head'):
        task.predict_step(batch, 0)
    with pytest.raises(ValueError, match='class_names has 1 names for 3'):
        PatchClassificationTask(num_classes=3, class_names=['a'])


@pytest.mark.slow
def test_mivit_class_weights_from_data_module(tmp_path: Path) -> None:
    args = [
        '--config',
        str(CONF / 'mivit_houston2013.yaml'),
        f'--trainer.default_root_dir={tmp_path}',
        '--trainer.enable_checkpointing=true',
    ]
    assert main(['fit', *args, '--trainer.max_steps=2']) == 0
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    assert task_class_path(checkpoint).endswith('PatchClassificationTask')
    task = load_task(checkpoint)
    assert isinstance(task, PatchClassificationTask)
    assert task.class_weights is None  # computed again at the next fit
    # The dataset's min-max scaling is recorded for raw inputs.
    data = Houston2013(HOUSTON)
    assert task.normalisation == data.normalisation
    config = str(CONF / 'mivit_houston2013.yaml')
    test_args = ['--config', config, f'--trainer.default_root_dir={tmp_path}']
    assert main(['test', *test_args]) == 0


@pytest.mark.parametrize('config', CONFIGS, ids=[c.stem for c in CONFIGS])
def test_tiny_configs_parse_under_both_command_lines(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchgeo.main import main as torchgeo_main

    for run in (main, torchgeo_main):
        with pytest.raises(SystemExit) as info:
            run(['fit', '--config', str(config), '--print_config'])
        assert info.value.code in (0, None)
        assert 'PatchClassificationTask' in capsys.readouterr().out


@pytest.mark.slow
def test_paper_configs_parse_under_torchgeo(capsys: pytest.CaptureFixture[str]) -> None:
    from torchgeo.main import main as torchgeo_main

    for config in sorted(Path('configs').glob('*.yaml')):
        if not config.stem.startswith(('mivit_', 'm3amba_', 'hymamba_')):
            continue
        with pytest.raises(SystemExit) as info:
            torchgeo_main(['fit', '--config', str(config), '--print_config'])
        assert info.value.code in (0, None)
        assert 'class_path: torchgeo_ext.' in capsys.readouterr().out


@pytest.mark.slow
def test_torchgeo_fit_m3amba(tmp_path: Path) -> None:
    from torchgeo.main import main as torchgeo_main

    config = CONF / 'm3amba_muufl.yaml'
    torchgeo_main(
        [
            'fit',
            '--config',
            str(config),
            f'--trainer.default_root_dir={tmp_path}',
            '--trainer.max_steps=2',
        ]
    )
