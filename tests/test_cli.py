import subprocess
import sys
from pathlib import Path

import pytest

from torchgeo_ext.cli import build_parser, command_modules, main

CONF = Path(__file__).parent / 'conf'


def test_help_imports_no_heavy_modules() -> None:
    # `torchgeo-ext --help` must not import torch, lightning or torchgeo.
    code = (
        'import sys\n'
        'from torchgeo_ext.cli import build_parser\n'
        'build_parser().format_help()\n'
        "heavy = [m for m in ('torch', 'lightning', 'torchgeo', 'rasterio', 'geopandas')"
        ' if m in sys.modules]\n'
        'print(heavy)\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == '[]'


def test_every_command_registers() -> None:
    names = command_modules()
    assert names[0] == 'lightning'
    parser = build_parser()
    help_text = parser.format_help()
    for sub in ('fit', 'validate', 'test', 'predict'):
        assert sub in help_text


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert 'usage: torchgeo-ext' in capsys.readouterr().out


def test_unknown_command_exits_with_usage() -> None:
    with pytest.raises(SystemExit) as info:
        main(['no-such-command'])
    assert info.value.code == 2


def test_configs_accept_short_class_names(tmp_path: Path) -> None:
    # `torchgeo-ext fit` knows this library's tasks and data modules by short name.
    config = (CONF / 'dianet_fyh.yaml').read_text()
    config = config.replace(
        'torchgeo_ext.trainers.segmentation.SegmentationTask', 'SegmentationTask'
    )
    config = config.replace(
        'torchgeo_ext.datamodules.fyh.FYHDataModule', 'FYHDataModule'
    )
    assert 'torchgeo_ext.' not in config
    short = tmp_path / 'short.yaml'
    short.write_text(config)
    args = ['--config', str(short), '--trainer.default_root_dir', str(tmp_path)]
    assert main(['fit', *args, '--trainer.fast_dev_run', 'true']) == 0
