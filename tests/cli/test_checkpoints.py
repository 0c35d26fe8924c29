"""Checkpoints saved during ``fit`` are atomic: a failed save leaves no file under its name.

The disk is filled by patching :func:`torch.save` (a test cannot mount a small
tmpfs): it writes part of the checkpoint, then fails with ENOSPC, as it does
on a full disk.
"""

import errno
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.commands.lightning import _remove_failed_log_dir, complete_checkpoint
from torchgeo_ext.export import checkpoint_io
from torchgeo_ext.export.atomic import registered_temporaries
from torchgeo_ext.export.checkpoint_io import (
    AtomicCheckpointIO,
    save_checkpoint_atomically,
)

from .conftest import CONF, REPO


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, good_saves: int) -> list[str]:
    """torch.save works *good_saves* times, then runs out of space half-way."""
    real = torch.save
    calls: list[str] = []

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(str(getattr(f, 'name', f)))
        if len(calls) <= good_saves:
            real(obj, f, *args, **kwargs)
            return
        f.write(b'PK\x03\x04 the first bytes of a checkpoint')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, 'save', save)
    return calls


def test_failed_save_leaves_nothing_and_keeps_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / 'checkpoints' / 'last.ckpt'
    save_checkpoint_atomically({'step': 1}, path)
    fill_disk_after(monkeypatch, good_saves=0)
    with pytest.raises(OSError, match='No space left on device') as info:
        save_checkpoint_atomically({'step': 2}, path)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(path.parent)  # the checkpoint folder
    assert 'last.ckpt' in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == ['last.ckpt']
    assert torch.load(path, weights_only=True) == {'step': 1}
    assert registered_temporaries() == []
    # A new checkpoint name: nothing appears under it.
    with pytest.raises(OSError, match=r'epoch=1-step=4\.ckpt'):
        save_checkpoint_atomically({'step': 4}, path.with_name('epoch=1-step=4.ckpt'))
    assert sorted(p.name for p in path.parent.iterdir()) == ['last.ckpt']


def test_unrelated_errors_pass_through(tmp_path: Path) -> None:
    path = tmp_path / 'a.ckpt'
    with pytest.raises(Exception, match='lambda'):
        save_checkpoint_atomically({'f': lambda: 0}, path)  # cannot be pickled
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_io_from_a_config(tmp_path: Path) -> None:
    # `torchgeo fit` users name it in the trainer's plugins.
    from lightning.pytorch.cli import LightningCLI
    from torchgeo.datamodules import BaseDataModule
    from torchgeo.tasks import BaseTask

    cli = LightningCLI(
        model_class=BaseTask,
        datamodule_class=BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        run=False,
        args=[
            '--config',
            str(CONF / 'dianet_fyh.yaml'),
            '--data.init_args.root',
            str(REPO / 'tests' / 'data' / 'fyh'),
            '--trainer.plugins+=torchgeo_ext.export.checkpoint_io.AtomicCheckpointIO',
        ],
    )
    io = cli.trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO)
    io.save_checkpoint({'step': 3}, tmp_path / 'x.ckpt')
    assert torch.load(tmp_path / 'x.ckpt', weights_only=True) == {'step': 3}
    assert checkpoint_io.use_atomic_checkpoints(cli.trainer) is False  # kept


def test_failed_run_cleanup_ignores_corrupt_checkpoints(tmp_path: Path) -> None:
    good = tmp_path / 'good.ckpt'
    torch.save({'a': 1}, good)
    assert complete_checkpoint(good)
    run = tmp_path / 'version_0'
    (run / 'checkpoints').mkdir(parents=True)
    truncated = run / 'checkpoints' / 'epoch=0-step=2.ckpt'
    truncated.write_bytes(good.read_bytes()[:40])
    (run / 'checkpoints' / 'epoch=5-step=24.ckpt').write_bytes(b'')
    assert not complete_checkpoint(truncated)
    _remove_failed_log_dir({'log_dir': run, 'existed': False})
    assert not run.exists()  # only corrupt checkpoints: nothing worth keeping
    # With a whole checkpoint the folder stays, without the corrupt ones.
    (run / 'checkpoints').mkdir(parents=True)
    (run / 'checkpoints' / 'epoch=0-step=1.ckpt').write_bytes(good.read_bytes())
    (run / 'checkpoints' / 'epoch=1-step=2.ckpt').write_bytes(b'')
    _remove_failed_log_dir({'log_dir': run, 'existed': False})
    assert sorted(p.name for p in (run / 'checkpoints').iterdir()) == [
        'epoch=0-step=1.ckpt'
    ]
    assert zipfile.is_zipfile(run / 'checkpoints' / 'epoch=0-step=1.ckpt')


@pytest.mark.slow
def test_fit_on_a_full_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first epoch's checkpoint is saved; the disk is full at the second.
    calls = fill_disk_after(monkeypatch, good_saves=1)
    argv = [
        'fit',
        '--config',
        str(CONF / 'dianet_fyh.yaml'),
        '--data.init_args.root',
        str(REPO / 'tests' / 'data' / 'fyh'),
        '--trainer.default_root_dir',
        str(tmp_path / 'runs'),
        '--trainer.logger',
        'true',
        '--trainer.max_epochs',
        '2',
    ]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(calls) == 2, calls
    folder = tmp_path / 'runs' / 'lightning_logs' / 'version_0' / 'checkpoints'
    last = [line for line in err.splitlines() if line.strip()][-1]
    assert 'Traceback' not in err, err
    assert last.startswith('torchgeo-ext fit: error:'), last
    for part in (str(folder), 'epoch=1-step=2.ckpt', 'No space left on device'):
        assert part in last, last
    # The first checkpoint stays, whole; nothing under the second name or beside it.
    assert sorted(p.name for p in folder.iterdir()) == ['epoch=0-step=1.ckpt']
    assert complete_checkpoint(folder / 'epoch=0-step=1.ckpt')
    assert registered_temporaries() == []
