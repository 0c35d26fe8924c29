import ast
import subprocess
import sys
from pathlib import Path

import pytest

from torchgeo_ext.cli import build_parser, command_modules, main
from torchgeo_ext.demos.scene import make_demo_scene

CONF = Path(__file__).parent / 'conf'


def test_help_imports_no_heavy_modules() -> None:
    # `torchgeo-ext --help` must not import torch, lightning, torchgeo or Flower.
    code = (
        'import sys\n'
        'from torchgeo_ext.cli import build_parser\n'
        'build_parser().format_help()\n'
        "heavy = [m for m in ('torch', 'lightning', 'torchgeo', 'rasterio', 'geopandas',"
        " 'flwr', 'ray') if m in sys.modules]\n"
        'print(heavy)\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == '[]'


#: Packages that only training, detection or the model zoo need.
MODEL_ZOO = ('lightning', 'torchvision', 'torchgeo', 'timm', 'kornia', 'torchmetrics')


def imported(code: str) -> list[str]:
    """Run *code* in a fresh interpreter; the heavy packages it imported."""
    heavy = (
        'torch',
        'rasterio',
        'geopandas',
        'pandas',
        'scipy',
        'flwr',
        'ray',
        *MODEL_ZOO,
    )
    report = f'\nimport sys\nprint([m for m in {heavy!r} if m in sys.modules])\n'
    result = subprocess.run(
        [sys.executable, '-c', code + report],
        capture_output=True,
        text=True,
        check=True,
    )
    names: list[str] = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    return names


def test_subpackages_import_lazily() -> None:
    # Every subpackage resolves its names on first use (PEP 562): importing
    # them all imports no third-party package.
    packages = [
        'commands',
        'datamodules',
        'datasets',
        'export',
        'federated',
        'losses',
        'metrics',
        'models',
        'ops',
        'pipelines',
        'samplers',
        'trainers',
    ]
    code = '\n'.join(f'import torchgeo_ext.{name}' for name in packages)
    assert imported(code) == []


def test_rx_path_imports_no_model_zoo(tmp_path: Path) -> None:
    # `torchgeo-ext anomaly --method rx` needs torch and rasterio, nothing more.
    scene, _ = make_demo_scene(tmp_path / 'scene.tif', size=16, bands=4)
    code = (
        'from torchgeo_ext.cli import main\n'
        f"assert main(['anomaly', {str(scene)!r}, '-o', "
        f"{str(tmp_path / 'out.tif')!r}, '--method', 'rx']) == 0\n"
    )
    assert imported(code) == ['torch', 'rasterio']


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


class Unraisable:
    """An object whose finaliser raises: Python reports it as "unraisable"."""

    def __del__(self) -> None:
        raise RuntimeError('raised in a C callback')


@pytest.mark.parametrize('ending', ['returns', 'fails'])
def test_lost_interruption_still_interrupts(
    ending: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A signal's exception raised while C code calls back into Python (GDAL's
    # error handler) is lost; the command must still end as interrupted, with
    # its outputs rolled back and no traceback printed.
    import os
    import signal

    from torchgeo_ext.cli import run_guarded
    from torchgeo_ext.errors import RECEIVED_SIGNALS, Interrupted, InvalidInputError
    from torchgeo_ext.export.atomic import atomic_output

    out = tmp_path / 'out.txt'

    def job() -> int:
        with atomic_output(out) as tmp:
            tmp.write_text('written after the signal')
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Interrupted:
            pass  # what an "Exception ignored in ..." amounts to
        Unraisable()  # a consequence of the lost exception: not printed
        if ending == 'fails':
            raise InvalidInputError(out, 'the writer produced no file')
        return 0

    assert run_guarded('probe', job) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == 'interrupted'
    assert 'Traceback' not in err
    assert 'raised in a C callback' not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    assert RECEIVED_SIGNALS == []  # reset for the next command
