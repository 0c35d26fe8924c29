"""Tests of torchgeo_ext.commands.fyh: the ``fyh-build`` converter command.

The converter itself is tested in tests/converters/test_fyh.py; these tests
check what the command adds: its options, how it calls the converter, what it
prints and returns, on the tiny fake raw files of tests/data/fyh/raw.
"""

import argparse
import datetime as dt
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from torchgeo_ext.cli import main
from torchgeo_ext.commands import fyh as command
from torchgeo_ext.converters import fyh as converter
from torchgeo_ext.datasets.fyh import FYH

RAW = Path(__file__).parents[1] / 'data' / 'fyh' / 'raw'


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers(dest='command'))
    return parser.parse_args(['fyh-build', *argv])


class FakeReport:
    def __init__(self, scenes: list[str]) -> None:
        self.scenes = scenes

    def summary(self) -> str:
        return f'{len(self.scenes)} scene(s) built'


def test_defaults_and_declared_paths() -> None:
    args = parse('fy4a', 'h8', '-o', 'out')
    assert (args.fy4a_dir, args.himawari_dir, args.output) == ('fy4a', 'h8', 'out')
    assert args.split == 'train'
    assert args.max_fill == 1250  # the paper's rule
    assert args.tolerance_minutes == 0.0
    assert not args.geotiff
    assert not args.progress
    # the command line checks these before running (inputs exist, output writable)
    assert args.io_outputs == (('output', 'directory'),)
    assert args.io_inputs == ('fy4a_dir', 'himawari_dir')


@pytest.mark.parametrize(
    'argv',
    [
        ('fy4a', 'h8'),  # no -o
        ('fy4a', 'h8', '-o', 'out', '--split', 'val'),
        ('fy4a', 'h8', '-o', 'out', '--max-fill', '-1'),
        ('fy4a', 'h8', '-o', 'out', '--max-fill', '1.5'),
        ('fy4a', 'h8', '-o', 'out', '--tolerance-minutes', '-2'),
    ],
)
def test_bad_options_exit_with_usage(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parse(*argv)
    assert caught.value.code == 2
    assert 'error:' in capsys.readouterr().err


@pytest.mark.parametrize(('scenes', 'status'), [(['a', 'b'], 0), ([], 1)])
def test_run_passes_options_and_reports(
    scenes: list[str],
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake_build(*args: Any, **kwargs: Any) -> FakeReport:
        calls.append((args, kwargs))
        warnings.warn('FYH builder skipped a scan', UserWarning, stacklevel=1)
        return FakeReport(scenes)

    monkeypatch.setattr(converter, 'build_fyh', fake_build)
    args = parse(
        'fy4a',
        'h8',
        '-o',
        'out',
        '--split',
        'test',
        '--geotiff',
        '--max-fill',
        '300',
        '--tolerance-minutes',
        '2.5',
        '--progress',
    )
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # a warning reaching the user would raise
        assert command.run(args) == status
    assert calls == [
        (
            ('fy4a', 'h8', 'out'),
            {
                'split': 'test',
                'geotiff': True,
                'max_fill': 300,
                'tolerance': dt.timedelta(minutes=2.5),
                'progress': True,
            },
        )
    ]
    assert capsys.readouterr().out == f'{len(scenes)} scene(s) built\n'


def test_build_with_max_fill_and_geotiff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / 'fyh'
    argv = ['fyh-build', str(RAW / 'FY4A'), str(RAW / 'Himawari'), '-o', str(out)]
    status = main([*argv, '--geotiff', '--max-fill', '5000'])
    assert status == 0
    printed = capsys.readouterr().out
    assert '1 scene(s) built' in printed
    assert '3 scene(s) skipped' in printed  # the broken fake scans, listed
    # --max-fill: the tiles kept are those of the scene label with at most
    # 5000 fill pixels (class 10), counted here from the label GeoTIFF.
    (label_path,) = (out / 'scenes').glob('*_label.tif')
    with rasterio.open(label_path) as src:
        label = src.read(1)
    fill = (label == FYH.ignore_index).reshape(9, 100, 10, 100).sum((1, 3))
    expected = int((fill <= 5000).sum())
    assert 1 < expected < 90  # the fake scene has tiles on both sides of 5000
    assert len(os.listdir(out / 'mattrain')) == expected
    assert len(FYH(str(out), split='train')) == expected
    tile = FYH(str(out), split='train')[0]
    assert int((tile['mask'] == FYH.ignore_index).sum()) <= 5000
    assert np.isfinite(tile['image'].numpy()).all()


def test_missing_input_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            'fyh-build',
            str(tmp_path / 'nope'),
            str(RAW / 'Himawari'),
            '-o',
            str(tmp_path / 'x'),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'nope' in err
    assert not (tmp_path / 'x').exists()
