"""SIGINT and SIGTERM in the middle of every command, with real subprocesses.

Each probe starts ``python -m torchgeo_ext.cli ...``, waits until the command
is busy (a temporary output exists, or it reports progress), sends the signal
and checks: exit status 130 (SIGINT) or 143 (SIGTERM), ``interrupted`` as the
last line on stderr, no traceback, nothing left in the working folder (no
output, no temporary file or folder, no ``lightning_logs/version_N``) and the
inputs byte-identical.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import CONF, FYH_RAW, REPO, Assets, tree, write_raster

pytestmark = pytest.mark.slow

Ready = Callable[[Path, str], bool]


def temporary_present(work: Path, err: str) -> bool:
    """A hidden temporary file or folder of an output exists."""
    return any(p.name.startswith('.') for p in work.rglob('*'))


def exists(name: str) -> Ready:
    def ready(work: Path, err: str) -> bool:
        return (work / name).exists()

    return ready


def says(text: str) -> Ready:
    def ready(work: Path, err: str) -> bool:
        return text in err

    return ready


def interrupt(
    argv: list[str], work: Path, logs: Path, ready: Ready, signum: int
) -> tuple[int, str]:
    """Run a command, signal it once *ready* holds, return its status and stderr."""
    # The subprocess imports the same tree as the tests.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1', PYTHONPATH=path)
    err_path = logs / 'stderr.txt'
    with open(err_path, 'w') as err_file:
        proc = subprocess.Popen(
            [sys.executable, '-m', 'torchgeo_ext.cli', *argv],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            env=env,
        )
        try:
            deadline = time.monotonic() + 240
            while not ready(work, err_path.read_text(errors='replace')):
                if proc.poll() is not None:
                    raise AssertionError(
                        f'finished before the signal:\n{err_path.read_text()}'
                    )
                if time.monotonic() > deadline:
                    raise AssertionError(f'never got busy:\n{err_path.read_text()}')
                time.sleep(0.01)
            proc.send_signal(signum)
            status = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return status, err_path.read_text(errors='replace')


@pytest.fixture(scope='session')
def big(assets: Assets) -> dict[str, Path]:
    """Rasters large enough that a command is still busy when signalled."""
    root = assets.root / 'big'
    root.mkdir(exist_ok=True)
    return {
        'scene': write_raster(root / 'scene.tif', 8, 1024, 1024, 'float32'),
        'seg': write_raster(root / 'seg.tif', 14, 256, 256, 'float32'),
        'rgb': write_raster(root / 'rgb.tif', 3, 256, 256),
        'ir': write_raster(root / 'ir.tif', 1, 256, 256, seed=1),
    }


def commands(
    assets: Assets, big: dict[str, Path], work: Path
) -> dict[str, tuple[list[str], Ready]]:
    return {
        'anomaly': (
            [
                'anomaly',
                str(big['scene']),
                '-o',
                'scores.tif',
                '--vector',
                'a.gpkg',
                '--tile-size',
                '64',
            ],
            temporary_present,
        ),
        'segment': (
            [
                'segment',
                str(big['seg']),
                '-o',
                'classes.tif',
                '--vector',
                'c.gpkg',
                '--checkpoint',
                str(assets.dianet),
                '--tile-size',
                '32',
                '--overlap',
                '8',
                '--batch-size',
                '1',
            ],
            temporary_present,
        ),
        'detect': (
            [
                'detect',
                str(big['rgb']),
                str(big['ir']),
                '-o',
                'boxes.gpkg',
                '--checkpoint',
                str(assets.superyolo),
                '--tile-size',
                '64',
                '--batch-size',
                '1',
                '--progress',
            ],
            says('detect:'),
        ),
        'demo': (['demo', '-o', 'demo', '--size', '64'], exists('demo')),
        'fyh-build': (
            [
                'fyh-build',
                str(FYH_RAW / 'FY4A'),
                str(FYH_RAW / 'Himawari'),
                '-o',
                'fyh',
                '--geotiff',
            ],
            exists('fyh'),
        ),
        'fit': (
            [
                'fit',
                '--config',
                str(CONF / 'dianet_fyh.yaml'),
                '--data.init_args.root',
                str(REPO / 'tests' / 'data' / 'fyh'),
                '--trainer.max_epochs',
                '100000',
                '--trainer.logger',
                'true',
                '--trainer.enable_checkpointing',
                'false',
                '--trainer.default_root_dir',
                'runs',
            ],
            exists('runs/lightning_logs/version_0'),
        ),
    }


@pytest.mark.parametrize(
    ('command', 'signum'),
    [
        ('anomaly', signal.SIGINT),
        ('anomaly', signal.SIGTERM),
        ('segment', signal.SIGINT),
        ('detect', signal.SIGTERM),
        ('demo', signal.SIGINT),
        ('fyh-build', signal.SIGTERM),
        ('fit', signal.SIGTERM),
    ],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else v,
)
def test_interrupted_leaves_nothing(
    command: str,
    signum: signal.Signals,
    assets: Assets,
    big: dict[str, Path],
    tmp_path: Path,
) -> None:
    work = tmp_path / 'work'
    logs = tmp_path / 'logs'
    work.mkdir()
    logs.mkdir()
    argv, ready = commands(assets, big, work)[command]
    shared = tree(assets.root)
    status, err = interrupt(argv, work, logs, ready, signum)
    assert status == 128 + signum, err
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == 'interrupted', err
    assert tree(work) == {}, err
    assert tree(assets.root) == shared
