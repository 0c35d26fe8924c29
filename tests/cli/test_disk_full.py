"""A full disk while writing outputs: one line naming the output and the cause.

The disk is filled by patching the writers (a test cannot mount a small
tmpfs): GDAL's own behaviour is imitated, an ENOSPC printed on stderr and an
unrelated error raised, with the free space of the output folder at zero.
"""

import shutil
from pathlib import Path

import geopandas as gpd
import pytest

from torchgeo_ext.cli import main

from .conftest import Assets, tree


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


def one_line(err: str, *names: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert 'Traceback' not in err, err
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], f'{name!r} not in {lines[0]!r}'
    assert '.tmp-' not in lines[0], lines[0]
    assert 'See previous exception' not in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero bytes free everywhere (as the output folder would report)."""
    real = shutil.disk_usage

    def usage(path: object) -> object:
        found = real(path)  # type: ignore[arg-type]
        return type(found)(found.total, found.total, 0)

    monkeypatch.setattr(shutil, 'disk_usage', usage)


@pytest.mark.parametrize('ext', ['gpkg', 'geojson'])
def test_vector_output_on_a_full_disk(
    ext: str,
    assets: Assets,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    full_disk: None,
) -> None:
    import pyogrio
    import pyogrio.geopandas

    real = pyogrio.geopandas.write_dataframe

    def fill(df: gpd.GeoDataFrame, path: str, **kwargs: object) -> None:
        real(df, path, **kwargs)
        raise pyogrio.errors.FeatureError('failed to write feature 3')

    monkeypatch.setattr(pyogrio.geopandas, 'write_dataframe', fill)
    monkeypatch.setattr(pyogrio, 'write_dataframe', fill)
    out = work / f'boxes.{ext}'
    out.write_text('previous result\n')
    before = tree(work)
    argv = [
        'detect',
        str(work / 'rgb.tif'),
        str(work / 'ir.tif'),
        '--checkpoint',
        str(assets.box),
        '-o',
        str(out),
    ]
    status, err = run(argv, capsys)
    assert status == 2, err
    one_line(err, out.name, 'No space left on device')
    assert tree(work) == before


def fail_stream_write(
    monkeypatch: pytest.MonkeyPatch, message: str, cause: str
) -> None:
    """The streamed GeoTIFF fails mid-way, as GDAL does (rasterio's chained error)."""
    from rasterio.errors import RasterioIOError

    from torchgeo_ext.export.raster import RasterWriter

    real = RasterWriter.write

    def write(self: RasterWriter, window: object, data: object) -> None:
        real(self, window, data)  # type: ignore[arg-type]
        raise RasterioIOError(message) from RasterioIOError(cause)

    monkeypatch.setattr(RasterWriter, 'write', write)


def test_raster_output_on_a_full_disk(
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    full_disk: None,
) -> None:
    fail_stream_write(
        monkeypatch,
        'Write failed. See previous exception for details.',
        'TIFFAppendToStrip:Seek error at scanline 0',
    )
    out = work / 'scores.tif'
    out.write_text('previous result\n')
    before = tree(work)
    status, err = run(['anomaly', str(work / 'scene.tif'), '-o', str(out)], capsys)
    assert status == 2, err
    one_line(err, out.name, 'No space left on device')
    assert tree(work) == before


def test_gdal_write_error_names_its_cause(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not the disk: rasterio's "See previous exception" is replaced by the cause.
    fail_stream_write(
        monkeypatch,
        'Write failed. See previous exception for details.',
        'TIFFWriteDirectory: bad directory',
    )
    out = work / 'scores.tif'
    before = tree(work)
    status, err = run(['anomaly', str(work / 'scene.tif'), '-o', str(out)], capsys)
    assert status == 2, err
    line = one_line(err, 'Write failed', 'TIFFWriteDirectory: bad directory')
    assert line.startswith('torchgeo-ext anomaly: error:'), line
    assert tree(work) == before
