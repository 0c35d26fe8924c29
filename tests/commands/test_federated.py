"""Tests of ``torchgeo-ext federated`` (its arguments; the run is in tests/federated)."""

from pathlib import Path

import pytest

from torchgeo_ext.cli import main


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(['federated', '--help'])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ('--config', '--output', '--rounds', '--verbose'):
        assert option in out


def test_bad_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / 'c.yaml'
    config.write_text('rounds: 2\nepochs: 3\n')
    assert main(['federated', '--config', str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'c.yaml' in err
    assert 'unknown setting(s) epochs' in err


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['federated', '--config', str(tmp_path / 'none.yaml')]) == 2
    assert 'none.yaml' in capsys.readouterr().err
