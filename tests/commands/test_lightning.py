"""Tests of torchgeo_ext.commands.lightning: what it checks around LightningCLI.

The Lightning runs themselves (fit, validate, ...) are exercised in
tests/cli/test_robustness.py and the trainer tests; these tests cover the
argument handling and error paths without a training run.
"""

import argparse
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torchgeo.datasets import DatasetNotFoundError

from torchgeo_ext.commands import lightning
from torchgeo_ext.commands.lightning import (
    SUBCOMMANDS,
    add_parser,
    check_checkpoint,
    complete_checkpoint,
    option_values,
    run_lightning,
)
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.trainers.base import TASK_CLASS_KEY

TASK = 'torchgeo_ext.trainers.detection.SuperYOLOTask'


def save_checkpoint(path: Path, task_class: str | None = TASK) -> Path:
    checkpoint: dict[str, Any] = {'state_dict': {'w': torch.zeros(2)}}
    if task_class is not None:
        checkpoint[TASK_CLASS_KEY] = task_class
    torch.save(checkpoint, path)
    return path


def test_add_parser_registers_the_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    calls: list[list[str]] = []
    monkeypatch.setattr(lightning, 'run_lightning', lambda argv: calls.append(argv))
    for name in SUBCOMMANDS:
        args = parser.parse_args([name, 'rest'])
        assert args.args == ['rest']
        args.run(args)
        assert calls[-1] == [name, 'rest']
    assert len(calls) == len(SUBCOMMANDS)


def test_command_line_hands_arguments_over_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from torchgeo_ext.cli import main

    calls: list[list[str]] = []

    def fake_run(argv: list[str]) -> int:
        calls.append(argv)
        return 0

    monkeypatch.setattr(lightning, 'run_lightning', fake_run)
    argv = ['fit', '--config', 'x.yaml', '--trainer.max_epochs=1', '--help']
    assert main(argv) == 0
    assert calls == [argv]


def test_option_values_both_spellings() -> None:
    argv = ['--ckpt_path', 'a.ckpt', '--ckpt_path=b.ckpt', '--ckpt_path_x=c', '-c']
    assert option_values(argv, '--ckpt_path') == ['a.ckpt', 'b.ckpt']
    assert option_values(argv, '-c') == []  # no value after it
    assert option_values([], '--config') == []


def test_from_configs_reads_configs_then_argv(tmp_path: Path) -> None:
    first = tmp_path / 'a.yaml'
    first.write_text(f'ckpt_path: from_a.ckpt\nmodel:\n  class_path: {TASK}\n')
    second = tmp_path / 'b.yaml'
    second.write_text('model: SegmentationTask\n')
    broken = tmp_path / 'broken.yaml'
    broken.write_text('model: [unclosed\n')
    found = lightning._from_configs(
        ['fit', '--config', str(first), '-c', str(second), '--config', str(broken)]
    )
    assert found == {'ckpt_path': 'from_a.ckpt', 'model': 'SegmentationTask'}
    found = lightning._from_configs(
        [
            'fit',
            f'--config={first}',
            '--model.class_path',
            'ClassificationTask',
            '--ckpt_path=given.ckpt',
        ]
    )
    assert found == {'ckpt_path': 'given.ckpt', 'model': 'ClassificationTask'}
    # an inline dict is not a class name
    found = lightning._from_configs(['fit', '--model', '{"class_path": "X"}'])
    assert found == {}
    assert lightning._from_configs(['fit', '--config', str(tmp_path / 'nope')]) == {}


def test_check_checkpoint_accepts_its_model(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / 'good.ckpt')
    check_checkpoint(str(ckpt))
    check_checkpoint(str(ckpt), TASK)
    check_checkpoint(str(ckpt), 'SuperYOLOTask')  # short names compare too
    plain = save_checkpoint(tmp_path / 'plain.ckpt', None)
    check_checkpoint(str(plain), 'SegmentationTask')  # nothing recorded to compare


def test_check_checkpoint_refusals(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match='is a folder'):
        check_checkpoint(str(tmp_path))
    with pytest.raises(MissingInputError, match='checkpoint not found'):
        check_checkpoint(str(tmp_path / 'missing.ckpt'))
    notes = tmp_path / 'notes.ckpt'
    notes.write_text('not a checkpoint\n')
    with pytest.raises(InvalidInputError, match='not a readable checkpoint'):
        check_checkpoint(str(notes))
    good = save_checkpoint(tmp_path / 'good.ckpt')
    truncated = tmp_path / 'truncated.ckpt'
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(InvalidInputError, match='not a readable checkpoint'):
        check_checkpoint(str(truncated))
    weights = tmp_path / 'weights.ckpt'
    torch.save({'w': torch.zeros(1)}, weights)
    with pytest.raises(InvalidInputError, match='holds no state_dict'):
        check_checkpoint(str(weights))
    with pytest.raises(
        InvalidInputError,
        match=r'a checkpoint of SuperYOLOTask .* runs SegmentationTask',
    ) as caught:
        check_checkpoint(str(good), 'torchgeo.trainers.SegmentationTask')
    assert str(good) in str(caught.value)


def test_complete_checkpoint(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / 'good.ckpt')
    assert complete_checkpoint(good)
    cut = tmp_path / 'cut.ckpt'
    cut.write_bytes(good.read_bytes()[:-30])
    assert not complete_checkpoint(cut)
    empty = tmp_path / 'empty.ckpt'
    empty.touch()
    assert not complete_checkpoint(empty)
    assert not complete_checkpoint(tmp_path / 'missing.ckpt')
    assert not complete_checkpoint(tmp_path)


def test_failed_run_removes_its_new_log_folder(tmp_path: Path) -> None:
    version = tmp_path / 'logs' / 'lightning_logs' / 'version_0'
    state = {
        'log_dir': version,
        'existed': False,
        'new_parents': [version.parent, version.parent.parent],
    }
    (version / 'checkpoints').mkdir(parents=True)
    (version / 'checkpoints' / 'cut.ckpt').write_bytes(b'PK\x03\x04 cut short')
    (version / 'hparams.yaml').write_text('{}\n')
    lightning._remove_failed_log_dir(state)
    assert list(tmp_path.iterdir()) == []


def test_failed_run_keeps_a_whole_checkpoint(tmp_path: Path) -> None:
    version = tmp_path / 'lightning_logs' / 'version_3'
    (version / 'checkpoints').mkdir(parents=True)
    whole = save_checkpoint(version / 'checkpoints' / 'epoch=0.ckpt')
    cut = version / 'checkpoints' / 'epoch=1.ckpt'
    cut.write_bytes(whole.read_bytes()[:50])
    lightning._remove_failed_log_dir(
        {'log_dir': version, 'existed': False, 'new_parents': [version.parent]}
    )
    assert whole.exists()
    assert not cut.exists()  # it would pass for a checkpoint


def test_failed_run_leaves_an_existing_log_folder(tmp_path: Path) -> None:
    version = tmp_path / 'version_0'
    version.mkdir()
    (version / 'notes.txt').write_text('mine')
    lightning._remove_failed_log_dir({'log_dir': version, 'existed': True})
    lightning._remove_failed_log_dir({})  # the run never got to a logger
    assert (version / 'notes.txt').read_text() == 'mine'


def test_user_errors_become_input_errors(tmp_path: Path) -> None:
    cause = InvalidInputError(tmp_path / 'out', 'is an existing file')
    wrapped = ValueError('Problem with given class_path')
    wrapped.__cause__ = cause
    assert lightning._user_error(wrapped, None) is cause

    dataset = types.SimpleNamespace(root=str(tmp_path / 'nowhere'))
    missing = lightning._user_error(DatasetNotFoundError(dataset), None)  # type: ignore[arg-type]
    assert isinstance(missing, MissingInputError)
    assert 'nowhere' in str(missing)

    mismatch = RuntimeError('Error(s) in loading state_dict for Task: size mismatch')
    fits = lightning._user_error(mismatch, 'old.ckpt')
    assert isinstance(fits, InvalidInputError)
    assert 'old.ckpt' in str(fits)
    assert 'weights do not fit' in str(fits)
    assert lightning._user_error(mismatch, None) is None  # no checkpoint of the user's
    assert lightning._user_error(ZeroDivisionError(), 'x.ckpt') is None


def test_run_refuses_a_bad_checkpoint_before_starting(tmp_path: Path) -> None:
    config = tmp_path / 'c.yaml'
    config.write_text(f'model:\n  class_path: {TASK}\n')
    with pytest.raises(MissingInputError, match='checkpoint not found'):
        run_lightning(['validate', '--config', str(config), '--ckpt_path', 'no.ckpt'])
    other = save_checkpoint(tmp_path / 'seg.ckpt', 'torchgeo.trainers.SegmentationTask')
    with pytest.raises(InvalidInputError, match='give a SuperYOLOTask checkpoint'):
        run_lightning(['test', '-c', str(config), f'--ckpt_path={other}'])
