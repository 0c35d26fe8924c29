"""TDDS recording under DDP: two gloo CPU processes through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchgeo_ext.samplers.subset import read_index_list
from torchgeo_ext.trainers.tdds import (
    _first_occurrence,
    load_dynamics,
    prune_indices,
    tdds_scores,
)


def test_first_occurrence_keeps_one_output_per_sample() -> None:
    index = torch.tensor([4, 1, 4, 0, 1])
    assert _first_occurrence(index).tolist() == [True, True, False, True, False]


@pytest.mark.slow
def test_two_ddp_ranks_record_every_sample_once(tmp_path: Path) -> None:
    record = tmp_path / 'record.yaml'
    text = Path('tests/conf/tdds_mivit_houston2013.yaml').read_text()
    text = text.replace('tdds_dynamics.pt', str(tmp_path / 'dyn.pt'))
    record.write_text(text.replace('tdds_keep.txt', str(tmp_path / 'keep.txt')))
    command = [
        *(sys.executable, '-m', 'torchgeo_ext.cli', 'fit', '--config', str(record)),
        f'--trainer.default_root_dir={tmp_path}',
        '--trainer.strategy=ddp',
        '--trainer.devices=2',
        '--trainer.accelerator=cpu',
    ]
    env = {**os.environ, 'PYTHONPATH': os.getcwd(), 'OMP_NUM_THREADS': '1'}
    done = subprocess.run(  # a hang fails through the timeout
        command, capture_output=True, text=True, timeout=240, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # 127 samples on 2 ranks: DistributedSampler repeats one; nothing may be missed
    assert 'were not seen' not in done.stderr
    dynamics = load_dynamics(tmp_path / 'dyn.pt')
    assert dynamics.shape[:2] == (3, 127)
    torch.testing.assert_close(dynamics.sum(-1), torch.ones(3, 127))
    # every sample has a real output each epoch (the unseen fill is exactly uniform)
    uniform = torch.full_like(dynamics, 1 / dynamics.shape[-1])
    assert not torch.isclose(dynamics, uniform).all(-1).any()
    # the list is what one process would write from the same outputs
    listed = read_index_list(tmp_path / 'keep.txt')
    expected = prune_indices(tdds_scores(dynamics, window=3, decay=0.9), 0.5)
    assert listed == expected.tolist()
    assert len(set(listed)) == len(listed) == 64
    # rank 0 alone wrote, atomically: no temporary files are left
    assert sorted(p.name for p in tmp_path.glob('*dyn*')) == ['dyn.pt']
    assert sorted(p.name for p in tmp_path.glob('*keep*')) == ['keep.txt']
