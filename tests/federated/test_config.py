"""Tests of the federation config reader."""

from pathlib import Path

import pytest

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.federated.config import FederationConfig, read_config

CONF = Path(__file__).parents[1] / 'conf' / 'federated' / 'fedfusion_houston2013.yaml'
CONFIGS = Path(__file__).parents[2] / 'configs'


def test_reads_the_test_config_with_overrides() -> None:
    config = read_config(CONF, output='out', rounds=5, sample_size=None)
    assert config.dataset == 'houston2013'
    assert config.model == 'fedfusion_tiny'
    assert config.rounds == 5
    assert config.output == 'out'
    assert config.sample_size == 64  # None leaves the file's value
    assert config.num_clients == 2
    assert config.source == str(CONF)


@pytest.mark.parametrize('path', sorted(CONFIGS.glob('fedfusion_*.yaml')), ids=str)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = read_config(path)
    assert config.rank == 4
    assert config.patch_size == 7


def test_unknown_setting_is_named(tmp_path: Path) -> None:
    path = tmp_path / 'c.yaml'
    path.write_text('rounds: 2\nlearning_rate: 0.1\n')
    with pytest.raises(
        InvalidInputError, match=r'c.yaml: unknown setting\(s\) learning_rate'
    ):
        read_config(path)


@pytest.mark.parametrize(
    ('text', 'problem'),
    [
        ('rounds: 0', 'rounds must be positive'),
        ('rank: -1', 'rank must be 0 or more'),
        ('dataset: indian_pines', 'dataset must be one of'),
        ('model: mivit_base', 'model must be one of'),
        ('cpus_per_client: 4\nnum_cpus: 2', 'cpus_per_client'),
        ('rounds: two', 'wrong type'),
        ('- 1\n- 2', 'must be a mapping'),
        ('rounds: [', 'not valid YAML'),
    ],
)
def test_bad_values(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / 'c.yaml'
    path.write_text(text + '\n')
    with pytest.raises(InvalidInputError, match=problem):
        read_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match='no such config file'):
        read_config(tmp_path / 'none.yaml')


def test_defaults_are_valid() -> None:
    FederationConfig().check()
