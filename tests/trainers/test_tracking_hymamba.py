"""HyMamba through the tracking task: training from scratch, OTB evaluation, CLIs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader

from torchgeo_ext.cli import main
from torchgeo_ext.datasets.hotc import HOTC
from torchgeo_ext.metrics.tracking import success_auc
from torchgeo_ext.models.hymamba import HyMambaTracker
from torchgeo_ext.trainers.tracking import TrackingTask

from .conftest import assert_gradient_step_lowers

ROOT = 'tests/data/hotc/hotc2020'
CONFIG = 'tests/conf/hymamba_hotc.yaml'
MODALITY = ('falsecolor', 'hsi')


def _task() -> TrackingTask:
    torch.manual_seed(0)
    return TrackingTask(model='hymamba_tiny', template_size=16, search_size=32)


def test_task_builds_hymamba() -> None:
    assert isinstance(_task().model, HyMambaTracker)


def test_loss_trains_from_scratch(
    hotc_pair_batch: Callable[[], dict[str, Any]],
) -> None:
    task = _task()
    batch = hotc_pair_batch()
    target = batch['search_bbox_xyxy'].reshape(-1, 4)
    task.train()
    assert_gradient_step_lowers(
        lambda: task.compute_loss(task(batch['template'], batch['search']), target)[
            'loss'
        ],
        list(task.parameters()),
    )


def test_otb_evaluation_of_a_sequence() -> None:
    task = _task().eval()
    dataset = HOTC(ROOT, split='test', modality=MODALITY)
    view = dataset.sequence(0)
    boxes = task.track(view)
    assert boxes.shape == (len(view), 4)
    assert torch.isfinite(boxes).all()
    task.on_test_epoch_start()
    for i, batch in enumerate(DataLoader(dataset, batch_size=1)):
        task.test_step(batch, i)
    task._finish_sequence()
    result = task.test_metrics.compute()
    torch.testing.assert_close(
        result['test_success_auc'].float(),
        torch.tensor(success_auc(boxes, view.boxes), dtype=torch.float32),
    )


@pytest.mark.slow
def test_cli_fit_and_test(tmp_path: Path) -> None:
    args = ['--config', CONFIG, f'--trainer.default_root_dir={tmp_path}']
    assert main(['fit', *args, '--trainer.max_steps=2']) == 0
    assert main(['test', *args]) == 0


@pytest.mark.parametrize(
    'config', ['tests/conf/hymamba_hotc.yaml', 'configs/hymamba_hotc.yaml']
)
def test_configs_parse_under_both_command_lines(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from torchgeo.main import main as torchgeo_main

    for run in (main, torchgeo_main):
        with pytest.raises(SystemExit) as info:
            run(['fit', '--config', config, '--print_config'])
        assert info.value.code in (0, None)
        assert 'hymamba_' in capsys.readouterr().out
