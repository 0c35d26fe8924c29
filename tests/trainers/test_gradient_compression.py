import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.multiprocessing.spawn import spawn

from torchgeo_ext.trainers.gradient_compression import (
    RSDGCState,
    neighbourhood_importance,
    rs_dgc_hook,
    select_layer_entries,
)


def test_indicator_is_neighbourhood_mean_and_deviation() -> None:
    g = torch.zeros(5, 5)
    g[2, 2] = 3.0
    nsi = neighbourhood_importance(g, window=3, std_weight=0.0)
    # the mean of the 3 x 3 neighbourhood: 3 / 9 around the spike, 0 far from it
    assert nsi[1, 1] == pytest.approx(3 / 9)
    assert nsi[0, 0] == 0
    # a corner neighbourhood has 4 entries (padding is not counted)
    g = torch.ones(4, 4)
    assert torch.allclose(neighbourhood_importance(g, 3, 0.0), torch.ones(4, 4))
    # a constant neighbourhood has no deviation, an alternating one has
    alternating = torch.tensor([[1.0, -1.0] * 4] * 4)
    nsi = neighbourhood_importance(alternating, 3, std_weight=1.0)
    assert nsi[1:-1, 1:-1].min() > 0.9
    with pytest.raises(ValueError, match='odd'):
        neighbourhood_importance(g, 2)


def test_small_gradients_in_busy_neighbourhoods_win() -> None:
    # Unlike magnitude top-k, a small entry among large ones outranks an isolated one.
    g = torch.zeros(1, 20)
    g[0, 2:5] = torch.tensor([5.0, 0.1, 5.0])
    g[0, 15] = 0.5
    chosen = set(select_layer_entries(neighbourhood_importance(g), 3 / 20).tolist())
    assert 3 in chosen  # 0.1, between two 5.0
    assert 15 not in chosen  # 0.5, alone
    assert set(select_layer_entries(g.abs(), 3 / 20).tolist()) == {2, 4, 15}


def test_layer_densities_keep_the_budget() -> None:
    state = RSDGCState(density=0.1, density_range=10)
    state.layer_importance = {1: 1.0, 2: 3.0}
    densities = state.layer_densities([1, 2], [1000, 1000])
    assert densities[1] == pytest.approx(3 * densities[0])
    assert sum(d * 1000 for d in densities) == pytest.approx(0.1 * 2000)
    # clamped to the range
    state = RSDGCState(density=0.1, density_range=2)
    state.layer_importance = {1: 1.0, 2: 1.0, 3: 100.0}
    low, _, high = state.layer_densities([1, 2, 3], [1000, 1000, 1000])
    assert low == pytest.approx(0.05)
    assert high == pytest.approx(0.2)
    with pytest.raises(ValueError, match='density'):
        RSDGCState(density=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 4),
    )


def _data(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    # A learnable synthetic 4-class task: the class sets the mean colour of the patch.
    generator = torch.Generator().manual_seed(100 + rank)
    y = torch.randint(0, 4, (64,), generator=generator)
    colours = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    x = colours[y][:, :, None, None] + 0.8 * torch.randn(
        64, 3, 8, 8, generator=generator
    )
    return x, y


def _train(rank: int, hook_state: RSDGCState | None, steps: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(_model())
    if hook_state is not None:
        model.register_comm_hook(hook_state, rs_dgc_hook)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _data(rank)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {'losses': losses, 'params': flat}


def _worker(rank: int, port: int, out: str) -> None:
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2
    )
    torch.set_num_threads(1)
    dense = _train(rank, None, 40)
    state = RSDGCState(density=0.05, dense_below=128)
    sparse = _train(rank, state, 40)
    torch.save(
        {
            'dense': dense,
            'sparse': sparse,
            'bytes_sent': state.bytes_sent,
            'bytes_dense': state.bytes_dense,
        },
        os.path.join(out, f'{rank}.pt'),
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes(tmp_path: Path) -> None:
    spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f'{rank}.pt') for rank in range(2)]
    # the ranks stay in sync: the hook hands every rank the same averaged gradient
    torch.testing.assert_close(
        results[0]['sparse']['params'], results[1]['sparse']['params']
    )
    torch.testing.assert_close(
        results[0]['dense']['params'], results[1]['dense']['params']
    )
    for result in results:
        dense, sparse = result['dense']['losses'], result['sparse']['losses']
        # both learn (chance is ln 4 = 1.39), and the compressed run tracks the dense one
        assert sum(dense[-5:]) / 5 < 0.5 * dense[0]
        assert sum(sparse[-5:]) / 5 < 0.5 * sparse[0]
        assert sum(sparse[-5:]) / 5 < sum(dense[-5:]) / 5 + 0.25
        # about 5 % of the entries (index + value: 8 bytes each) plus the small tensors whole
        ratio = result['bytes_dense'] / result['bytes_sent']
        assert 5 < ratio < 12


def test_config_builds_the_ddp_strategy_with_the_hook() -> None:
    # configs/rs_dgc_*.yaml selects the hook through Lightning's DDPStrategy.
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import DDPStrategy, Strategy

    config = Path(__file__).parents[2] / 'configs' / 'rs_dgc_mivit_houston2013.yaml'
    strategy = yaml.safe_load(config.read_text())['trainer']['strategy']
    parser = ArgumentParser()
    parser.add_argument('--strategy', type=Strategy)
    built = parser.instantiate_classes(
        parser.parse_object({'strategy': strategy})
    ).strategy
    assert isinstance(built, DDPStrategy)
    assert built._ddp_comm_hook is rs_dgc_hook
    assert isinstance(built._ddp_comm_state, RSDGCState)
    assert built._ddp_comm_state.density == 0.02
