"""``torchgeo-ext anomaly --method sap`` and ``anomaly_raster(..., method='sap')``."""

from pathlib import Path

import lightning
import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

from torchgeo_ext.cli import main
from torchgeo_ext.demos.scene import synthetic_anomaly_scene
from torchgeo_ext.export.raster import write_raster
from torchgeo_ext.pipelines.anomaly import anomaly_raster, detect_anomalies
from torchgeo_ext.trainers.sap import SAPPriorTask

TRANSFORM = (30.0, 0.0, 5e5, 0.0, -30.0, 5e6)


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    cube, truth = synthetic_anomaly_scene(16, 12, seed=2, abundance=(0.5, 0.8))
    path = tmp_path_factory.mktemp('sap') / 'scene.tif'
    write_raster(path, cube, crs='EPSG:32633', transform=TRANSFORM)
    return path, truth


@pytest.fixture(scope='module')
def prior_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A prior pre-trained on 5-band crops: scenes of any band count use it.
    task = SAPPriorTask(model_kwargs={'features': 4})
    data = [{'image': torch.rand(5, 8, 8)} for _ in range(2)]
    loader: DataLoader[dict[str, torch.Tensor]] = DataLoader(data, batch_size=2)  # type: ignore[arg-type]
    trainer = lightning.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator='cpu',
    )
    trainer.fit(task, loader)
    path = tmp_path_factory.mktemp('sap') / 'prior.ckpt'
    trainer.save_checkpoint(path)
    return path


def test_cli_with_a_pretrained_prior(
    scene: tuple[Path, np.ndarray], prior_checkpoint: Path, tmp_path: Path
) -> None:
    path, truth = scene
    out = tmp_path / 'sap.tif'
    argv = ['anomaly', str(path), '-o', str(out), '--method', 'sap']
    assert main([*argv, '--checkpoint', str(prior_checkpoint), '--seed', '1']) == 0
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        scores = dst.read(1)
    assert scores.shape == truth.shape
    assert np.isfinite(scores).all()
    # The same scores in memory (same prior, same seed).
    with rasterio.open(path) as src:
        cube = torch.from_numpy(src.read().astype(np.float32))
    memory = detect_anomalies(cube, 'sap', checkpoint=prior_checkpoint, seed=1)
    np.testing.assert_allclose(scores, memory.numpy(), rtol=1e-5, atol=1e-6)


def test_python_entry_point_fits_the_prior_on_the_scene(
    scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, truth = scene
    result = anomaly_raster(
        path, tmp_path / 'sap.tif', method='sap', fit_steps=2, iterations=10
    )
    with rasterio.open(result.scores) as dst:
        assert dst.read(1).shape == truth.shape
    assert result.crs is not None


def test_cli_refuses_options_of_other_methods(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'x.tif')]
    assert main([*argv, '--method', 'rx', '--seed', '1']) == 2
    assert 'applies to bsdm and sap only' in capsys.readouterr().err
    assert main([*argv, '--method', 'sap', '--iterations', '3']) == 2
    assert 'applies to bsdm only' in capsys.readouterr().err
