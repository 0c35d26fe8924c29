"""Tests of the clients' data: roles, regions, samples."""

from pathlib import Path

import numpy as np
import pytest
import torch

from torchgeo_ext.errors import InvalidInputError
from torchgeo_ext.federated.config import read_config
from torchgeo_ext.federated.data import ClientData, client_role, load_dataset

CONF = Path(__file__).parents[1] / 'conf' / 'federated' / 'fedfusion_houston2013.yaml'


def test_roles_pair_modalities_per_region() -> None:
    config = read_config(CONF, regions=2)
    roles = [client_role(p, 4, config) for p in range(4)]
    assert [(r.modality, r.region) for r in roles] == [
        ('hsi', 0),
        ('lidar', 0),
        ('hsi', 1),
        ('lidar', 1),
    ]
    with pytest.raises(InvalidInputError, match='the federation has 4 clients'):
        client_role(0, 2, config)


def test_regions_split_the_pixels_and_modalities_the_bands() -> None:
    config = read_config(CONF, regions=2)
    dataset = load_dataset(config, 'train')
    parts = [ClientData(dataset, client_role(p, 4, config), 2) for p in range(4)]
    hsi0, lidar0, hsi1, _ = parts
    # Partners of a region hold the same pixels; the regions cover the split once.
    np.testing.assert_array_equal(hsi0.indices, lidar0.indices)
    both = np.concatenate([hsi0.indices, hsi1.indices])
    np.testing.assert_array_equal(np.sort(both), np.arange(len(dataset)))
    assert (dataset.cols[hsi0.indices] < 15).all()
    assert (dataset.cols[hsi1.indices] >= 15).all()
    positions = hsi0.sample(0, seed=0)
    assert hsi0.patches(positions[:3]).shape == (3, 144, 7, 7)
    assert lidar0.patches(positions[:3]).shape == (3, 1, 7, 7)
    full = torch.stack([dataset[int(i)]['image'] for i in hsi0.indices[:3]])
    torch.testing.assert_close(lidar0.patches(positions[:3]), full[:, 144:])
    torch.testing.assert_close(
        hsi0.labels(positions[:3]), torch.from_numpy(dataset.labels[hsi0.indices[:3]])
    )


def test_partners_draw_the_same_sample() -> None:
    config = read_config(CONF)
    dataset = load_dataset(config, 'train')
    hsi, lidar = (ClientData(dataset, client_role(p, 2, config), 1) for p in (0, 1))
    a, b = hsi.sample(20, seed=3), lidar.sample(20, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 20
    assert hsi.digest(a) == lidar.digest(b)
    assert hsi.digest(hsi.sample(20, seed=4)) != hsi.digest(a)
    assert len(hsi.sample(10_000, seed=0)) == len(hsi)
