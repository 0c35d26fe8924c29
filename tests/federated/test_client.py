"""Tests of a client's local steps (no Flower)."""

from pathlib import Path

import pytest
import torch

from torchgeo_ext.federated.client import LocalClient
from torchgeo_ext.federated.config import read_config
from torchgeo_ext.federated.data import client_role

CONF = Path(__file__).parents[1] / 'conf' / 'federated' / 'fedfusion_houston2013.yaml'


def test_training_moves_own_encoder_and_shared_layers_only() -> None:
    config = read_config(CONF, sample_size=40)
    client = LocalClient(config, client_role(1, 2, config))  # LiDAR
    partner = LocalClient(config, client_role(0, 2, config))  # HSI
    before = {k: v.clone() for k, v in client.model.state_dict().items()}
    hsi, digest = partner.features('train', seed=5)
    lidar, lidar_digest = client.features('train', seed=5)
    assert digest == lidar_digest
    assert hsi.shape == lidar.shape == (40, 16, 4, 4)
    metrics = client.train(hsi, seed=5)
    assert metrics['num-examples'] == 40
    after = client.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert any(k.startswith('encoders.lidar.') for k in changed)
    assert any(client.model.is_shared(k) for k in changed)
    assert not any(k.startswith('encoders.hsi.') for k in changed)


def test_shared_state_round_trip_and_evaluation() -> None:
    config = read_config(CONF)
    client = LocalClient(config, client_role(0, 2, config))
    shared = {k: torch.zeros_like(v) for k, v in client.shared_state().items()}
    client.load_shared(shared)
    assert all(v.abs().sum() == 0 for v in client.shared_state().values())
    partner = LocalClient(config, client_role(1, 2, config))
    lidar, _ = partner.features('test', seed=0)
    metrics = client.evaluate(lidar, seed=0)
    assert metrics['num-examples'] == len(client.data['test'])
    assert 0.0 <= metrics['accuracy'] <= 1.0
    assert 0.0 <= metrics['average-accuracy'] <= 1.0


def test_server_layers_must_be_the_shared_ones() -> None:
    config = read_config(CONF)
    client = LocalClient(config, client_role(0, 2, config))
    wrong = {**client.shared_state(), 'encoders.hsi.layers.0.0.weight': torch.zeros(1)}
    with pytest.raises(ValueError, match='do not match the shared layers'):
        client.load_shared(wrong)
