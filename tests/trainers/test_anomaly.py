from pathlib import Path

import lightning
import pytest
import torch
from torch.utils.data import DataLoader

from torchgeo_ext.cli import main
from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.models.bsdm import BSDM
from torchgeo_ext.models.stad import STADStudent, STADTeacher
from torchgeo_ext.trainers.anomaly import (
    AnomalyDetectionTask,
    BSDMTask,
    STADTask,
    load_bsdm,
    load_stad,
)
from torchgeo_ext.trainers.base import load_task

ROOT = Path(__file__).parents[1]
CONFIGS = {
    'bsdm': ROOT / 'conf' / 'bsdm_had100.yaml',
    'stad': ROOT / 'conf' / 'stad_had100.yaml',
}


@pytest.mark.slow
@pytest.mark.parametrize('method', ['bsdm', 'stad'])
def test_cli_fit_test_predict(method: str, tmp_path: Path) -> None:
    common = [
        '--config',
        str(CONFIGS[method]),
        '--trainer.default_root_dir',
        str(tmp_path),
    ]
    assert main(['fit', *common]) == 0
    (checkpoint,) = (tmp_path / 'checkpoints').glob('*.ckpt')
    task = load_task(checkpoint)
    assert isinstance(task, BSDMTask if method == 'bsdm' else STADTask)
    assert isinstance(task.model, BSDM if method == 'bsdm' else STADTeacher)
    assert main(['test', *common, '--ckpt_path', str(checkpoint)]) == 0
    # the paper's generalisation protocol: the trained model on another scene,
    # here with 23 bands on a 10-band model (two random band groups)
    from torchgeo_ext.pipelines.anomaly import detect_anomalies

    scene = torch.rand(23, 12, 12)
    if method == 'bsdm':
        assert isinstance(load_bsdm(checkpoint), BSDM)
    else:
        assert isinstance(load_stad(checkpoint), STADTeacher)
        assert isinstance(load_stad(checkpoint, student=True), STADStudent)
    scores = detect_anomalies(scene, method, checkpoint=checkpoint)
    assert scores.shape == (12, 12)
    assert torch.isfinite(scores).all()


def test_predict_step_scores_and_georeferencing() -> None:
    task = STADTask(
        in_channels=4, model_kwargs={'stages': 1, 'ffn': 8}, student_width=4, window=4
    )
    batch = {
        'image': torch.rand(1, 6, 6, 5),  # 6 bands -> the first 4
        'valid_mask': torch.ones(1, 6, 5, dtype=torch.bool),
        'crs': ['EPSG:32611'],
        'transform': torch.tensor([[5.0, 0, 7e5, 0, -5.0, 4e6]], dtype=torch.float64),
    }
    out = task.predict_step(batch, 0)
    assert out['prediction'].shape == (1, 6, 5)
    assert out['crs'] == ['EPSG:32611']
    torch.testing.assert_close(out['transform'], batch['transform'])


def test_training_steps_and_ema() -> None:
    task = STADTask(
        in_channels=4,
        model_kwargs={'stages': 2, 'ffn': 8},
        student_width=4,
        blob_count=(1, 2),
        blob_area=(1, 3),
        ema_decay=0.5,
    )
    data = [{'image': torch.rand(4, 8, 8)} for _ in range(4)]
    loader: DataLoader[dict[str, torch.Tensor]] = DataLoader(data, batch_size=2)  # type: ignore[arg-type]
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    before = [p.clone() for p in task.ema_teacher.module.parameters()]
    student_before = [b.clone() for b in task.ema_student.module.buffers()]
    trainer.fit(task, loader)
    after = list(task.ema_teacher.module.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(not p.requires_grad for p in after)
    # the shared EMA averages BatchNorm buffers too (the student's running stats)
    student_after = list(task.ema_student.module.buffers())
    assert any(
        not torch.equal(a, b)
        for a, b in zip(student_before, student_after, strict=True)
    )
    assert task.ema_teacher.decay == 0.5

    bsdm = BSDMTask(
        in_channels=4,
        model_kwargs={
            'embed_dim': 8,
            'time_dim': 4,
            'time_hidden': 8,
            'stats_hidden': 8,
            'blocks': [(8, 8, 8)],
        },
        scene_iterations=2,
        repeats=1,
    )
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    trainer.fit(bsdm, loader)
    # per-scene fitting on a 5-band scene (a sorted random 4 of its 5 bands)
    scores = bsdm.score_scene(torch.rand(5, 8, 8))
    assert scores.shape == (8, 8)
    assert torch.isfinite(scores).all()


def test_load_wrong_checkpoint(tmp_path: Path) -> None:
    task = STADTask(in_channels=4, model_kwargs={'stages': 1, 'ffn': 8})
    trainer = lightning.Trainer(logger=False, accelerator='cpu', max_epochs=0)
    trainer.strategy.connect(task)
    path = tmp_path / 'stad.ckpt'
    trainer.save_checkpoint(path)
    with pytest.raises(InvalidInputError, match='not a BSDM checkpoint'):
        load_bsdm(path)
    assert isinstance(load_stad(path), STADTeacher)


def test_bad_model() -> None:
    with pytest.raises(
        ValueError, match="unknown model 'stad' for BSDMTask; it trains bsdm"
    ):
        BSDMTask(model='stad')


def test_deprecated_single_task(tmp_path: Path) -> None:
    # the former task still builds and loads each method's task, with a warning
    with pytest.warns(DeprecationWarning, match='use BSDMTask'):
        task = AnomalyDetectionTask(method='bsdm', in_channels=4, window=8)
    assert isinstance(task, BSDMTask)
    with pytest.raises(ValueError, match='method'):
        AnomalyDetectionTask(method='rx')
    # a checkpoint of the former task: its class path and every argument
    with pytest.warns(DeprecationWarning, match='use STADTask'):
        stad = AnomalyDetectionTask(in_channels=4, model_kwargs={'stages': 1, 'ffn': 8})
    trainer = lightning.Trainer(logger=False, accelerator='cpu', max_epochs=0)
    trainer.strategy.connect(stad)
    path = tmp_path / 'former.ckpt'
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint['torchgeo_ext_task_class'] = (
        'torchgeo_ext.trainers.anomaly.AnomalyDetectionTask'
    )
    checkpoint['hyper_parameters'].update(method='stad', scene_iterations=500)
    torch.save(checkpoint, path)
    loaded = load_task(path)
    assert isinstance(loaded, STADTask)
    assert loaded.hparams['model_kwargs'] == {'stages': 1, 'ffn': 8}
