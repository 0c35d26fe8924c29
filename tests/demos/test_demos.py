import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio

from torchgeo_ext.cli import main


def test_demo_command_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / 'demo'
    assert main(['demo', '-o', str(out), '--methods', 'rx', '--size', '64']) == 0
    printed = capsys.readouterr().out
    assert 'ROC AUC' in printed
    with (
        rasterio.open(out / 'scene.tif') as scene,
        rasterio.open(out / 'rx_scores.tif') as rx,
    ):
        assert scene.crs.to_epsg() == 32633
        assert rx.crs == scene.crs
        assert rx.transform == scene.transform
        assert (rx.width, rx.height) == (scene.width, scene.height)
    polygons = gpd.read_file(out / 'rx_anomalies.gpkg')
    assert polygons.crs.to_epsg() == 32633
    assert len(polygons) > 0
    assert (out / 'quicklook.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    rows = (out / 'methods.csv').read_text().splitlines()
    assert rows[0] == 'method,roc_auc,seconds,scores'
    method, auc, _, _ = rows[1].split(',')
    assert method == 'rx'
    # The implanted targets are found far above chance.
    assert float(auc) > 0.9


def test_demo_rejects_unknown_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(['demo', '-o', str(tmp_path), '--methods', 'rx,nope']) == 2
    assert 'nope' in capsys.readouterr().err


@pytest.mark.slow
def test_detection_demo_reduced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A reduced detection demo: outputs in the right CRSs and the loss falls.

    The full demo (512 px scenes, 200 steps, about a minute) reaches
    mAP@0.5 >= 0.5; it is checked by hand and recorded in docs/own_imagery.md.
    """
    out = tmp_path / 'det'
    argv = ['demo', '--task', 'detection', '-o', str(out)]
    assert main([*argv, '--size', '192', '--steps', '30']) == 0
    printed = capsys.readouterr().out
    assert 'mAP@0.5' in printed
    labels = gpd.read_file(out / 'train_vehicles.gpkg')
    assert labels.crs.to_epsg() == 4326
    assert set(labels['class']) <= {'car', 'van'}
    assert len(labels) >= 4
    with (
        rasterio.open(out / 'test_rgb.tif') as rgb,
        rasterio.open(out / 'test_ir.tif') as ir,
    ):
        assert rgb.crs.to_epsg() == 32633
        assert ir.crs == rgb.crs
        assert ir.transform == rgb.transform
        assert (rgb.count, ir.count) == (3, 1)
    detections = gpd.read_file(out / 'detections.gpkg')
    assert detections.crs.to_epsg() == 32633
    assert {'class_name', 'score'} <= set(detections.columns)
    assert (out / 'quicklook.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    first, last = (
        float(v) for v in printed.split('loss ')[1].split(')')[0].split(' -> ')
    )
    # Learned something: 30 steps of 8 patches cut the YOLO loss well down.
    assert last < 0.75 * first


def test_demo_detection_checks_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['demo', '--task', 'detection', '--size', '64']) == 2
    assert '--size' in capsys.readouterr().err


def _demo_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """``torchgeo-ext demo ...`` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, '-m', 'torchgeo_ext.cli', 'demo', *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_demo_refuses_a_folder_of_the_users(tmp_path: Path) -> None:
    # The demo writes scene.tif and methods.csv: a user's folder holding
    # files is refused, and every file in it is left as it was.
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'scene.tif').write_bytes(b'my own scene')
    (mine / 'methods.csv').write_text('my own table\n')
    proc = _demo_cli('--output', str(mine), '--methods', 'rx', '--size', '16')
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(mine) in lines[0]
    assert 'non-empty folder that no demo made' in lines[0]
    assert (mine / 'scene.tif').read_bytes() == b'my own scene'
    assert (mine / 'methods.csv').read_text() == 'my own table\n'
    assert sorted(p.name for p in mine.iterdir()) == ['methods.csv', 'scene.tif']


def test_demo_reruns_into_its_own_folder(tmp_path: Path) -> None:
    out = tmp_path / 'demo'
    for _ in range(2):  # the second run replaces the first run's files
        proc = _demo_cli('--output', str(out), '--methods', 'rx', '--size', '16')
        assert proc.returncode == 0, proc.stderr
    assert (out / '.torchgeo-ext-demo').is_file()
    assert (out / 'methods.csv').is_file()


def test_demo_help_says_which_folders_it_writes() -> None:
    proc = _demo_cli('--help')
    assert proc.returncode == 0
    text = ' '.join(proc.stdout.split())
    assert 'any other non-empty folder is refused' in text
