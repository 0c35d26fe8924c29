from pathlib import Path

import pytest
import torch

from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.samplers.subset import (
    IndexedDataset,
    read_index_list,
    write_index_list,
)


class Squares(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    labels = [0, 1, 0, 1, 1]
    modalities = {'hsi': [0]}

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {'image': torch.tensor([float(i * i)]), 'label': torch.tensor(i % 2)}


def test_indexed_dataset_adds_original_indices() -> None:
    data = IndexedDataset(Squares())
    assert len(data) == 5
    assert int(data[3]['index']) == 3
    assert data[3]['index'].dtype == torch.int64
    subset = IndexedDataset(Squares(), [4, 1])
    assert len(subset) == 2
    assert int(subset[0]['index']) == 4
    assert float(subset[0]['image']) == 16.0
    assert subset.labels.tolist() == [1, 1]
    assert subset.modalities == {'hsi': [0]}  # other attributes pass through
    batch = next(iter(torch.utils.data.DataLoader(subset, batch_size=2)))
    assert batch['index'].tolist() == [4, 1]
    with pytest.raises(ValueError, match='outside a dataset of 5'):
        IndexedDataset(Squares(), [0, 5])


def test_index_lists_round_trip_and_errors(tmp_path: Path) -> None:
    path = write_index_list(tmp_path / 'keep.txt', [7, 2, 9], header='TDDS\nbest first')
    assert path.read_text().startswith('# TDDS\n# best first\n7\n')
    assert read_index_list(path) == [7, 2, 9]
    with pytest.raises(MissingInputError, match='not found'):
        read_index_list(tmp_path / 'none.txt')
    bad = tmp_path / 'bad.txt'
    bad.write_text('1\n2\nx3\n')
    with pytest.raises(InvalidInputError, match="line 3: 'x3'"):
        read_index_list(bad)
    bad.write_text('1\n2\n1\n')
    with pytest.raises(InvalidInputError, match='line 3: index 1 repeats'):
        read_index_list(bad)
    bad.write_text('# nothing\n')
    with pytest.raises(InvalidInputError, match='no sample index'):
        read_index_list(bad)
