"""``torchgeo-ext federated``: two simulated clients (HSI, LiDAR), two rounds on Ray, fake Houston2013.

One Ray run for the module (about a minute on a loaded 2-core machine, mostly Ray's start and
the client worker's imports); the tests read what it wrote.
"""

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.cli import main
from torchgeo_ext.federated.client import LocalClient
from torchgeo_ext.federated.config import read_config
from torchgeo_ext.federated.data import client_role

CONF = Path(__file__).parents[1] / 'conf' / 'federated' / 'fedfusion_houston2013.yaml'


@pytest.fixture(scope='module')
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    output = tmp_path_factory.mktemp('fedfusion') / 'run'
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(['federated', '--config', str(CONF), '-o', str(output)]) == 0
    history = json.loads((output / 'history.json').read_text())
    history['printed'] = printed.getvalue()
    return history, output


def states(output: Path) -> list[dict[str, Any]]:
    return [torch.load(output / f'client_{p}.pt')['state_dict'] for p in (0, 1)]


def test_shared_layers_are_averaged_and_equal(run: tuple[dict[str, Any], Path]) -> None:
    _, output = run
    hsi, lidar = states(output)
    server = torch.load(output / 'shared.pt')['state_dict']
    assert server
    assert all(k.startswith(('cross_a.', 'cross_b.', 'head.')) for k in server)
    for name, value in server.items():
        assert torch.equal(hsi[name], lidar[name]), name
        torch.testing.assert_close(hsi[name].float(), value.float())


def test_private_encoders_stay_local(run: tuple[dict[str, Any], Path]) -> None:
    _, output = run
    hsi, lidar = states(output)
    config = read_config(CONF)
    start = LocalClient(config, client_role(0, 2, config)).model.state_dict()
    for modality, owner, other in (('hsi', hsi, lidar), ('lidar', lidar, hsi)):
        names = [k for k in owner if k.startswith(f'encoders.{modality}.')]
        assert names
        # The owner trained its encoder; the other client never received it.
        assert any(not torch.equal(owner[k], other[k]) for k in names)
        assert all(torch.equal(other[k], start[k]) for k in names)


def test_exchange_sends_rank_4_factors(run: tuple[dict[str, Any], Path]) -> None:
    history, _ = run
    features = [t for t in history['traffic'] if t['kind'] == 'features']
    # 64 sampled training pixels x 16 channels, 4 x 4 maps (fedfusion_tiny).
    for t in features:
        if t['stage'] == 'train':
            assert t['shapes'] == {'u': [64 * 16, 4], 's': [4], 'v': [16, 4]}
        else:  # every test pixel
            assert t['shapes']['s'] == [4]
            assert t['shapes']['v'] == [16, 4]
    # Every round: each client's train and test features go up once and down once.
    assert len(features) == 2 * 2 * 2 * 2
    for t in features:
        assert 3.5 < t['raw_bytes'] / t['bytes'] < 4.0
    train_up = [t for t in features if t['stage'] == 'train' and t['direction'] == 'up']
    assert all(t['raw_bytes'] == 64 * 16 * 16 * 4 for t in train_up)


def test_rounds_report_metrics(run: tuple[dict[str, Any], Path]) -> None:
    history, output = run
    assert 'round 1: OA ' in history['printed']
    assert 'round 2: OA ' in history['printed']
    assert sorted(history['evaluate']) == ['1', '2']
    for metrics in history['evaluate'].values():
        assert 0.0 <= metrics['accuracy'] <= 1.0
        assert 0.0 <= metrics['average-accuracy'] <= 1.0
    assert sorted(history['train']) == ['1', '2']
    assert history['config']['model'] == 'fedfusion_tiny'
    # Only what was written: no temporary file is left beside the outputs.
    assert sorted(p.name for p in output.iterdir()) == [
        'client_0.pt',
        'client_1.pt',
        'history.json',
        'shared.pt',
    ]
