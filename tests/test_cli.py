import subprocess
import sys

import pytest

from torchgeo_ext.cli import build_parser, command_modules, main


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
