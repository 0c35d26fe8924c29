import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.demos.scene import make_demo_scene, synthetic_anomaly_scene
from torchgeo_ext.metrics.anomaly import auc_d_f


@pytest.fixture(scope='module')
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp('anomaly')
    return make_demo_scene(root / 'scene.tif', size=40, bands=12, seed=2)


def test_rx_with_vector(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    out, vec = tmp_path / 'scores.tif', tmp_path / 'anomalies.gpkg'
    argv = [str(path), '-o', str(out), '--method', 'rx', '--vector', str(vec)]
    assert main(['anomaly', *argv, '--threshold', '0.99']) == 0
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert dst.shape == src.shape
        scores = dst.read(1)
    gdf = gpd.read_file(vec)
    assert gdf.crs.to_epsg() == 32633
    assert len(gdf) >= 1
    assert {'class_id', 'class_name', 'score'} <= set(gdf.columns)
    assert (gdf['score'] > np.quantile(scores, 0.99)).all()
    assert 'polygons' in capsys.readouterr().out


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / 'missing.tif'
    assert main(['anomaly', str(missing), '-o', str(tmp_path / 'o.tif')]) == 2
    err = capsys.readouterr().err
    assert 'missing.tif' in err
    assert len(err.strip().splitlines()) == 1


def test_not_a_raster(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / 'bad.tif'
    bad.write_bytes(b'garbage')
    assert main(['anomaly', str(bad), '-o', str(tmp_path / 'o.tif')]) == 2
    assert 'bad.tif' in capsys.readouterr().err
    assert not (tmp_path / 'o.tif').exists()


@pytest.mark.filterwarnings('ignore::rasterio.errors.NotGeoreferencedWarning')
def test_no_crs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / 'plain.tif'
    with rasterio.open(
        plain, 'w', driver='GTiff', width=8, height=8, count=3, dtype='float32'
    ) as dst:
        dst.write(np.random.rand(3, 8, 8).astype('float32'))
    for method in ('rx', 'lrx'):
        assert (
            main(
                [
                    'anomaly',
                    str(plain),
                    '-o',
                    str(tmp_path / 'o.tif'),
                    '--method',
                    method,
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert 'plain.tif' in err
        assert 'CRS' in err


def test_unwritable_output(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    assert main(['anomaly', str(path), '-o', str(tmp_path)]) == 2
    assert 'folder' in capsys.readouterr().err


def test_bad_threshold(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = [
        str(path),
        '-o',
        str(tmp_path / 'o.tif'),
        '--vector',
        str(tmp_path / 'v.gpkg'),
    ]
    with pytest.raises(SystemExit) as info:  # argparse: one usage line
        main(['anomaly', *argv, '--threshold', '1.5'])
    assert info.value.code == 2
    assert 'threshold' in capsys.readouterr().err


@pytest.fixture(scope='module')
def stad_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import lightning
    from torch.utils.data import DataLoader

    from torchgeo_ext.trainers.anomaly import STADTask

    task = STADTask(
        in_channels=6,
        model_kwargs={'stages': 2, 'ffn': 16},
        student_width=4,
        blob_count=(1, 2),
        blob_area=(1, 4),
        window=16,
    )
    data = [{'image': torch.rand(6, 8, 8)} for _ in range(2)]
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
    path = tmp_path_factory.mktemp('stad') / 'stad.ckpt'
    trainer.save_checkpoint(path)
    return path


@pytest.mark.parametrize('method', ['lrx', 'crd', 'bsdm', 'stad'])
def test_every_method_with_vector(
    method: str, scene: tuple[Path, np.ndarray], stad_checkpoint: Path, tmp_path: Path
) -> None:
    path, truth = scene
    out, vec = tmp_path / f'{method}.tif', tmp_path / f'{method}.geojson'
    argv = [
        'anomaly',
        str(path),
        '-o',
        str(out),
        '--method',
        method,
        '--vector',
        str(vec),
    ]
    if method == 'bsdm':
        argv += ['--iterations', '5']
    if method == 'stad':
        # a 12-band scene, a 6-band checkpoint
        argv += ['--checkpoint', str(stad_checkpoint), '--align-bands']
    if method == 'lrx':
        argv += ['--inner', '3', '--outer', '7']
    assert main([*argv, '--threshold', '0.98']) == 0
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        scores = dst.read(1)
    assert scores.shape == truth.shape
    assert np.isfinite(scores).all()
    gdf = gpd.read_file(vec)
    assert gdf.crs.to_epsg() == 32633
    assert len(gdf) >= 1
    if method in ('lrx', 'crd'):
        assert auc_d_f(torch.from_numpy(scores), torch.from_numpy(truth)) > 0.8


def test_stad_needs_checkpoint(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'o.tif'), '--method', 'stad']
    assert main(argv) == 2
    assert 'checkpoint' in capsys.readouterr().err


def test_option_for_wrong_method(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    assert (
        main(['anomaly', str(path), '-o', str(tmp_path / 'o.tif'), '--inner', '3']) == 2
    )
    assert 'lrx and crd' in capsys.readouterr().err


def test_mat_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scipy.io import savemat

    cube, truth = synthetic_anomaly_scene(24, 8, abundance=(0.3, 0.5), targets=3)
    mat = tmp_path / 'scene.mat'
    savemat(mat, {'data': cube.transpose(1, 2, 0), 'map': truth.astype(np.uint8)})
    out = tmp_path / 'scores.tif'
    assert main(['anomaly', str(mat), '-o', str(out), '--method', 'rx']) == 0
    assert 'no georeferencing' in capsys.readouterr().out
    with rasterio.open(out) as dst:
        assert dst.crs is None
        scores = dst.read(1)
    assert auc_d_f(torch.from_numpy(scores), torch.from_numpy(truth)) > 0.9
    vec = tmp_path / 'v.gpkg'
    assert main(['anomaly', str(mat), '-o', str(out), '--vector', str(vec)]) == 2
    assert 'no CRS' in capsys.readouterr().err
    assert not vec.exists()


def test_envi_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As left behind by TorchGeo's CLI: ENVI sidecar headers must still be found.
    monkeypatch.setenv('GDAL_DISABLE_READDIR_ON_OPEN', 'EMPTY_DIR')
    source = Path(__file__).parents[1] / 'data' / 'had100' / 'data' / 'aviris_ng_target'
    for file in source.glob('ang20170821t183707_1.*'):
        shutil.copy(file, tmp_path / file.name)
    data = tmp_path / 'ang20170821t183707_1.dat'
    for method in ('rx', 'lrx'):
        out = tmp_path / f'{method}.tif'
        argv = ['anomaly', str(data), '-o', str(out), '--method', method]
        if method == 'lrx':
            argv += ['--inner', '1', '--outer', '3']
        assert main(argv) == 0
        with (
            rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN='FALSE'),
            rasterio.open(data) as src,
            rasterio.open(out) as dst,
        ):
            assert dst.crs == src.crs
            assert dst.transform.almost_equals(src.transform)
            assert dst.shape == src.shape


def test_checkpoint_of_wrong_model(
    scene: tuple[Path, np.ndarray],
    stad_checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'o.tif'), '--method', 'bsdm']
    assert main([*argv, '--checkpoint', str(stad_checkpoint)]) == 2
    assert 'not a BSDM checkpoint' in capsys.readouterr().err
    assert not (tmp_path / 'o.tif').exists()


# --- Issue 25: subprocess tests of the command line ------------------------------------


def cli(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """``torchgeo-ext anomaly ...`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, '-m', 'torchgeo_ext.cli', 'anomaly', *map(str, argv)],
        check=False,
        capture_output=True,
        text=True,
    )


def test_concurrent_runs_sharing_output(tmp_path: Path) -> None:
    # Item 4: each run's polygons come from its own scores, never from the
    # shared output path that the other run may have replaced meanwhile.
    scenes, alone = {}, {}
    for name, seed in (('a', 1), ('b', 2)):
        scenes[name], _ = make_demo_scene(
            tmp_path / f'{name}.tif', size=48, bands=6, seed=seed
        )
        vec = tmp_path / f'{name}_alone.gpkg'
        assert (
            cli(
                scenes[name], '-o', tmp_path / f'{name}.out.tif', '--vector', vec
            ).returncode
            == 0
        )
        alone[name] = gpd.read_file(vec)
    shared = tmp_path / 'shared.tif'
    procs = {
        name: subprocess.Popen(
            [
                *(sys.executable, '-m', 'torchgeo_ext.cli', 'anomaly'),
                *(str(scenes[name]), '-o', str(shared)),
                *('--vector', str(tmp_path / f'{name}.gpkg')),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in scenes
    }
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        gdf = gpd.read_file(tmp_path / f'{name}.gpkg')
        assert f'({len(gdf)} regions' in out
        assert len(gdf) == len(alone[name])
        np.testing.assert_allclose(
            np.sort(gdf['score']), np.sort(alone[name]['score']), rtol=1e-6
        )


def test_checkpoint_band_count_refused_without_align(
    scene: tuple[Path, np.ndarray], stad_checkpoint: Path, tmp_path: Path
) -> None:
    # Item 7: a 12-band scene and a 6-band checkpoint.
    path, _ = scene
    out = tmp_path / 'o.tif'
    argv: list[str | Path] = [
        *(path, '-o', out, '--method', 'stad', '--checkpoint', stad_checkpoint)
    ]
    refused = cli(*argv)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert '12 bands' in refused.stderr
    assert '6' in refused.stderr
    assert '--align-bands' in refused.stderr
    assert not out.exists()
    aligned = cli(*argv, '--align-bands')
    assert aligned.returncode == 0, aligned.stderr
    assert 'note: aligned the 12 bands' in aligned.stdout
    assert 'first 6 bands' in aligned.stdout
    assert out.exists()
    alone = cli(path, '-o', tmp_path / 'p.tif', '--align-bands')
    assert alone.returncode == 2
    assert '--align-bands applies to a --checkpoint' in alone.stderr


def test_rx_refuses_checkpoint(
    scene: tuple[Path, np.ndarray], stad_checkpoint: Path, tmp_path: Path
) -> None:
    # Item 8: like --inner with rx.
    path, _ = scene
    for method in ('rx', 'lrx', 'crd'):
        result = cli(
            path,
            '-o',
            tmp_path / 'o.tif',
            '--method',
            method,
            '--checkpoint',
            stad_checkpoint,
        )
        assert result.returncode == 2
        assert f'--checkpoint does not apply to {method}' in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / 'o.tif').exists()


def test_envi_header_for_every_method(tmp_path: Path) -> None:
    # Item 9: one input resolver: the .hdr is accepted by rx as by lrx and crd.
    source = Path(__file__).parents[1] / 'data' / 'had100' / 'data' / 'aviris_ng_target'
    for file in source.glob('ang20170821t183707_1.*'):
        shutil.copy(file, tmp_path / file.name)
    header = tmp_path / 'ang20170821t183707_1.hdr'
    assert header.exists()
    for method in ('rx', 'lrx', 'crd'):
        out = tmp_path / f'{method}.tif'
        argv: list[str | Path] = [header, '-o', out, '--method', method]
        if method != 'rx':
            argv += ['--inner', '1', '--outer', '3']
        result = cli(*argv)
        assert result.returncode == 0, result.stderr
        with rasterio.open(out) as dst:
            assert dst.crs is not None
            assert dst.tags()['output_kind'] == 'scores'


def test_every_score_file_tagged(
    scene: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    # Item 14: lrx and bsdm score files carry output_kind like rx's.
    path, _ = scene
    for method in ('lrx', 'bsdm'):
        out = tmp_path / f'{method}.tif'
        extra = ['--iterations', '2'] if method == 'bsdm' else []
        assert cli(path, '-o', out, '--method', method, *extra).returncode == 0
        with rasterio.open(out) as dst:
            assert dst.tags()['output_kind'] == 'scores'
            assert dst.descriptions == (f'{method}_score',)


def test_masked_pixels_are_nodata(tmp_path: Path) -> None:
    # Item 5: a GeoTIFF with an internal mask over a bright 'sensor gap'.
    cube, _ = synthetic_anomaly_scene(32, 5, seed=1, targets=0)
    cube[:, 8:12, 8:12] += 50
    path = tmp_path / 'masked.tif'
    profile = {
        'driver': 'GTiff',
        'width': 32,
        'height': 32,
        'count': 5,
        'dtype': 'float32',
        'crs': 'EPSG:32633',
        'transform': rasterio.Affine(30, 0, 5e5, 0, -30, 5e6),
    }
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(path, 'w', **profile) as dst,
    ):
        dst.write(cube.astype(np.float32))
        mask = np.full((32, 32), 255, dtype=np.uint8)
        mask[8:12, 8:12] = 0
        dst.write_mask(mask)
    for method in ('rx', 'lrx'):
        out, vec = tmp_path / f'{method}.tif', tmp_path / f'{method}.gpkg'
        result = cli(
            path, '-o', out, '--method', method, '--vector', vec, '--threshold', '0.99'
        )
        assert result.returncode == 0, result.stderr
        with rasterio.open(out) as dst:
            scores = dst.read(1)
        assert np.isnan(scores[8:12, 8:12]).all()
        assert np.isfinite(scores).sum() == 32 * 32 - 16
        gdf = gpd.read_file(vec)
        rows, cols = np.nonzero(np.isfinite(scores) & (scores >= gdf['score'].min()))
        assert not ((rows >= 8) & (rows < 12) & (cols >= 8) & (cols < 12)).any()


def test_bsdm_progress_per_step_with_loss(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'b.tif'), '--method', 'bsdm']
    argv += ['--iterations', '3', '--batch-size', '64', '--progress']
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert 'bsdm training' in err
    assert '3/3' in err
    assert 'loss=' in err


def test_batch_size_options(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'b.tif')]
    bsdm = [*argv, '--method', 'bsdm']
    assert main([*bsdm, '--full-batch', '--batch-size', '8']) == 2
    assert 'exclude each other' in capsys.readouterr().err
    assert main([*argv, '--full-batch']) == 2
    assert '--batch-size applies to bsdm only' in capsys.readouterr().err
    assert main([*bsdm, '--full-batch', '--iterations', '1']) == 0


def test_bsdm_states_its_cost_before_starting(
    scene: tuple[Path, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = scene
    argv = ['anomaly', str(path), '-o', str(tmp_path / 'b.tif'), '--method', 'bsdm']
    assert main([*argv, '--iterations', '1']) == 0
    out = capsys.readouterr().out
    assert 'minutes of CPU time' in out
    assert '--iterations 100 or --batch-size 1024' in out
    assert out.index('note: bsdm fits') < out.index('scores (bsdm)')
