"""Two simulated clients (HSI, LiDAR) for two rounds on Ray, on the fake Houston2013 scene."""

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from torchgeo_ext.federated.client import LocalClient
from torchgeo_ext.federated.config import read_config
from torchgeo_ext.federated.data import client_role
from torchgeo_ext.federated.simulation import FederationRun, simulate

CONF = Path(__file__).parents[1] / 'conf' / 'fedfusion_houston2013.yaml'


@pytest.fixture(scope='module')
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FederationRun, Path]:
    output = tmp_path_factory.mktemp('fedfusion')
    config = read_config(CONF, output=str(output))
    return simulate(config), output


def states(output: Path) -> list[dict[str, Any]]:
    return [torch.load(output / f'client_{p}.pt')['state_dict'] for p in (0, 1)]


def test_shared_layers_are_averaged_and_equal(run: tuple[FederationRun, Path]) -> None:
    outcome, output = run
    hsi, lidar = states(output)
    server = outcome.result.arrays.to_torch_state_dict()
    assert server
    assert all(k.startswith(('cross_a.', 'cross_b.', 'head.')) for k in server)
    for name, value in server.items():
        assert torch.equal(hsi[name], lidar[name]), name
        torch.testing.assert_close(hsi[name].float(), value.float())
    saved = torch.load(output / 'shared.pt')['state_dict']
    assert set(saved) == set(server)


def test_private_encoders_stay_local(run: tuple[FederationRun, Path]) -> None:
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


def test_exchange_sends_rank_4_factors(run: tuple[FederationRun, Path]) -> None:
    outcome, _ = run
    # 64 sampled training pixels x 16 channels, 4 x 4 maps (fedfusion_tiny).
    for partition in (0, 1):
        shapes = outcome.sent_shapes[('train', partition)]
        assert shapes == {'u': (64 * 16, 4), 's': (4,), 'v': (16, 4)}
    features = [t for t in outcome.traffic if t['kind'] == 'features']
    # Every round: each client's train and test features go up once and down once.
    assert len(features) == 2 * 2 * 2 * 2
    for t in features:
        assert 3.5 < t['raw_bytes'] / t['bytes'] < 4.0
    train_up = [t for t in features if t['stage'] == 'train' and t['direction'] == 'up']
    assert all(t['raw_bytes'] == 64 * 16 * 16 * 4 for t in train_up)


def test_rounds_report_metrics_and_history(run: tuple[FederationRun, Path]) -> None:
    outcome, output = run
    evaluated = outcome.result.evaluate_metrics_clientapp
    assert sorted(evaluated) == [1, 2]
    assert all(0.0 <= m['accuracy'] <= 1.0 for m in evaluated.values())
    history = json.loads((output / 'history.json').read_text())
    assert sorted(history['evaluate']) == ['1', '2']
    assert history['traffic'] == outcome.traffic
    assert history['config']['model'] == 'fedfusion_tiny'
