"""Outputs that would destroy what an input reads, and outputs that are not local files.

An input reads more than its own path: a VRT reads its sources (nested VRTs
too), a ``/vsizip/`` member reads its archive, GDAL opens side files. An
output on any of them is refused before anything is written. URLs and GDAL
virtual paths as outputs are refused, never written as local paths.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from torchgeo_ext.cli import main

from .conftest import REPO, Assets, tree, write_vrt


def cli(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run the command line in a subprocess, as a user would."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, '-m', 'torchgeo_ext.cli', *argv],
        cwd=cwd,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stderr


def one_line(err: str, *names: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert 'Traceback' not in err, err
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], f'{name!r} not in {lines[0]!r}'
    return lines[0]


def mosaic(work: Path, raster: Path) -> Path:
    """``mos/hs.vrt`` over ``mos/hs_left.tif`` and ``mos/hs_right.tif`` (relative)."""
    folder = work / 'mos'
    folder.mkdir()
    shutil.copy(raster, folder / 'hs_left.tif')
    shutil.copy(raster, folder / 'hs_right.tif')
    return write_vrt(
        folder / 'hs.vrt', ['hs_left.tif', 'hs_right.tif'], like=folder / 'hs_left.tif'
    )


@pytest.mark.slow
def test_anomaly_output_is_a_vrt_source(assets: Assets, tmp_path: Path) -> None:
    mosaic(tmp_path, assets.scene)
    # The mosaic is a readable input: another output path works.
    status, err = cli(['anomaly', 'mos/hs.vrt', '-o', 'scores.tif'], tmp_path)
    assert status == 0, err
    (tmp_path / 'scores.tif').unlink()
    before = tree(tmp_path)
    status, err = cli(['anomaly', 'mos/hs.vrt', '-o', 'mos/hs_left.tif'], tmp_path)
    assert status == 2, err
    line = one_line(err, 'mos/hs_left.tif', 'hs.vrt', 'source')
    assert line.startswith('torchgeo-ext anomaly: error:'), line
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_segment_output_is_a_vrt_source(assets: Assets, tmp_path: Path) -> None:
    mosaic(tmp_path, assets.seg)
    before = tree(tmp_path)
    argv = ['segment', 'mos/hs.vrt', '--checkpoint', str(assets.dianet)]
    status, err = cli([*argv, '-o', 'mos/hs_right.tif'], tmp_path)
    assert status == 2, err
    one_line(err, 'mos/hs_right.tif', 'hs.vrt', 'source')
    # The class polygons on a source: refused too.
    status, err = cli([*argv, '-o', 'c.tif', '--vector', 'mos/hs_left.tif'], tmp_path)
    assert status == 2, err
    one_line(err, 'mos/hs_left.tif', 'hs.vrt')
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_url_output_is_refused(assets: Assets, tmp_path: Path) -> None:
    shutil.copy(assets.scene, tmp_path / 'scene.tif')
    before = tree(tmp_path)
    status, err = cli(['anomaly', 'scene.tif', '-o', 's3://bucket/out.tif'], tmp_path)
    assert status == 2, err
    one_line(err, 's3://bucket/out.tif', 'URL')
    assert tree(tmp_path) == before  # no ./s3:/bucket/out.tif


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as error:
        status = int(error.code or 0)
    return status, capsys.readouterr().err


def test_nested_and_absolute_vrt_sources(
    assets: Assets, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vrt = mosaic(work, assets.scene)
    # A VRT of the mosaic (relative), and one naming its sources by absolute path.
    outer = write_vrt(work / 'outer.vrt', ['mos/hs.vrt'], like=vrt)
    absolute = write_vrt(
        work / 'abs.vrt',
        [str(work / 'mos' / 'hs_left.tif')],
        relative=False,
        like=assets.scene,
    )
    before = tree(work)
    for source, out in (
        (outer, work / 'mos' / 'hs_right.tif'),
        (outer, work / 'mos' / 'hs.vrt'),
        (absolute, work / 'mos' / 'sub' / '..' / 'hs_left.tif'),
    ):
        status, err = run(['anomaly', str(source), '-o', str(out)], capsys)
        assert status == 2, err
        one_line(err, out.name, source.name, 'destroy the input')
    assert tree(work) == before


def test_vrt_source_relative_to_working_folder(
    assets: Assets, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # relativeToVRT="0": GDAL resolves the source from the working folder.
    (work / 'vrts').mkdir()
    vrt = write_vrt(
        work / 'vrts' / 'cwd.vrt', ['scene.tif'], relative=False, like=assets.scene
    )
    before = tree(work)
    old = Path.cwd()
    os.chdir(work)
    try:
        status, err = run(['anomaly', str(vrt), '-o', 'scene.tif'], capsys)
    finally:
        os.chdir(old)
    assert status == 2, err
    one_line(err, 'scene.tif', 'cwd.vrt')
    assert tree(work) == before


@pytest.mark.parametrize(
    ('command', 'option'),
    [
        (['anomaly', '@scene.tif', '-o'], 's3://bucket/out.tif'),
        (['anomaly', '@scene.tif', '-o', '@o.tif', '--vector'], 'gs://bucket/o.gpkg'),
        (['anomaly', '@scene.tif', '-o'], '/vsis3/bucket/out.tif'),
        (['anomaly', '@scene.tif', '-o'], '/vsizip/@out.zip/out.tif'),
        (
            ['detect', '@rgb.tif', '@ir.tif', '--checkpoint', '@box', '-o'],
            'https://h/o.gpkg',
        ),
        (['segment', '@seg.tif', '--checkpoint', '@dianet', '-o'], 'file:///tmp/o.tif'),
        (['demo', '-o'], 's3://bucket/demo'),
    ],
    ids=[
        'anomaly-s3',
        'anomaly-vector-gs',
        'vsis3',
        'vsizip',
        'detect-https',
        'segment-file-url',
        'demo-s3',
    ],
)
def test_non_local_outputs_refused(
    command: list[str],
    option: str,
    assets: Assets,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    named = {'box': str(assets.box), 'dianet': str(assets.dianet)}

    def resolve(arg: str) -> str:
        if arg.startswith('@'):
            return named.get(arg[1:], str(work / arg[1:]))
        return arg.replace('@', str(work) + '/')

    argv = [resolve(arg) for arg in [*command, option]]
    before = tree(work)
    old = Path.cwd()
    os.chdir(work)
    try:
        status, err = run(argv, capsys)
    finally:
        os.chdir(old)
    assert status == 2, err
    kind = 'GDAL virtual path' if option.startswith('/vsi') else 'URL'
    one_line(err, argv[-1], kind)
    assert tree(work) == before
