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
