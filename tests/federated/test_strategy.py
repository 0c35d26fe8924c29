"""Tests of the strategy's parts: the feature payloads and the shared-only average."""

import numpy as np
import pytest
import torch

from torchgeo_ext.federated.strategy import (
    average_shared,
    pack_features,
    unpack_features,
)


def test_rank_4_payload_holds_only_the_factors() -> None:
    torch.manual_seed(0)
    features = torch.randn(32, 16, 4, 4)
    record = pack_features(features, rank=4)
    shapes = {k: tuple(a.shape) for k, a in record.items()}
    assert shapes == {'u': (32 * 16, 4), 's': (4,), 'v': (16, 4)}
    data_bytes = sum(a.numpy().nbytes for a in record.values())
    assert data_bytes == 4 * (32 * 16 * 4 + 4 + 16 * 4)
    raw = features.numel() * 4
    assert 3.5 < raw / record.count_bytes() < 4.0
    restored = unpack_features(record, list(features.shape))
    assert restored.shape == features.shape
    s = torch.linalg.svdvals(features.reshape(32 * 16, 16))
    error = (restored - features).pow(2).sum()
    torch.testing.assert_close(error, s[4:].pow(2).sum(), rtol=1e-3, atol=1e-3)


def test_rank_0_sends_raw_features() -> None:
    features = torch.randn(3, 2, 4, 4)
    record = pack_features(features, rank=0)
    assert list(record) == ['features']
    torch.testing.assert_close(unpack_features(record, [3, 2, 4, 4]), features)


def test_average_is_example_weighted_over_shared_layers() -> None:
    a = {'head.w': np.array([0.0, 4.0], dtype=np.float32)}
    b = {'head.w': np.array([4.0, 0.0], dtype=np.float32)}
    out = average_shared([(a, 1.0), (b, 3.0)], {'head.w'})
    np.testing.assert_allclose(out['head.w'].numpy(), [3.0, 1.0])


def test_average_refuses_private_layers() -> None:
    a = {'head.w': np.zeros(2), 'encoders.hsi.w': np.zeros(2)}
    with pytest.raises(ValueError, match=r"private or unknown: \['encoders.hsi.w'\]"):
        average_shared([(a, 1.0)], {'head.w'})
