"""MFNet: RGB-thermal semantic segmentation of urban driving scenes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from numpy.typing import NDArray
from torchgeo.datasets import DatasetNotFoundError

from ..errors import InvalidInputError, MissingInputError
from .rgbt import RGBTSegmentationDataset, plot_rgbt_sample, read_image, read_label_png

# The readers and the plot moved to .rgbt; they stay importable from here.
__all__ = ['MFNet', 'plot_rgbt_sample', 'read_image', 'read_label_png']

Sample = dict[str, Any]


class MFNet(RGBTSegmentationDataset):
    """MFNet: multispectral (RGB + thermal) semantic segmentation of driving scenes.

    1,569 RGB-thermal pairs (820 by day, 749 by night) at 640 x 480 taken from
    a car with an InfReC R500 camera, labelled with 8 classes plus unlabelled.
    Usual split: 784 train / 392 val / 393 test (day and night test subsets).

    Dataset format (the public release, as distributed with RTFNet), under
    ``root``:

    * ``images/<name>.png``: 4-channel PNG, bands 1-3 RGB and band 4 thermal
      (uint8);
    * ``labels/<name>.png``: one band of class ids 0-8;
    * ``train.txt``, ``val.txt``, ``test.txt``, ``test_day.txt``,
      ``test_night.txt``: one image name per line, without extension
      (e.g. ``00001D``; ``D``/``N`` mark day and night).

    Samples: ``image`` float32 4 x H x W raw 0-255 values (RGB bands 0-2,
    thermal band 3, see :attr:`modalities`; data modules normalise) and
    ``mask`` int64 H x W.

    Dataset classes:

    0. unlabelled
    1. car
    2. person
    3. bike
    4. curve
    5. car stop
    6. guardrail
    7. colour cone
    8. bump

    The usual protocol (RTFNet and later) counts all 9 classes, unlabelled
    included, in the mIoU.

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1109/IROS.2017.8206396
    """

    classes: ClassVar[list[str]] = [
        'unlabelled',
        'car',
        'person',
        'bike',
        'curve',
        'car stop',
        'guardrail',
        'colour cone',
        'bump',
    ]
    #: Display colours, one per class.
    colors: ClassVar[list[tuple[int, int, int]]] = [
        (0, 0, 0),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
        (0, 0, 192),
        (128, 128, 0),
        (64, 64, 128),
        (192, 128, 128),
        (192, 64, 0),
    ]
    splits = ('train', 'val', 'test', 'test_day', 'test_night')

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'val', 'test', 'test_day', 'test_night'] = 'train',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialise a new MFNet dataset.

        Args:
            root: Folder holding ``images/``, ``labels/`` and the split lists.
            split: ``train``, ``val``, ``test``, ``test_day`` or ``test_night``.
            transforms: A function applied to each sample.

        Raises:
            ValueError: For an unknown split.
            DatasetNotFoundError: If the split list or the folders are missing.
            MissingInputError: If a listed image or label file is missing.
        """
        super().__init__(root, split, transforms)

    def _list_names(self) -> list[str]:
        """The names in the split list, each checked to have an image and a label."""
        list_path = os.path.join(self.root, f'{self.split}.txt')
        if not os.path.isfile(list_path) or not os.path.isdir(
            os.path.join(self.root, 'images')
        ):
            raise DatasetNotFoundError(self)
        names: list[str] = []
        with open(list_path) as f:
            for number, line in enumerate(f, start=1):
                name = line.strip()
                if not name:
                    continue
                name = os.path.splitext(name)[0] if name.endswith('.png') else name
                for folder in ('images', 'labels'):
                    path = os.path.join(self.root, folder, f'{name}.png')
                    if not os.path.isfile(path):
                        raise MissingInputError(
                            path, f'listed in {list_path} line {number} but missing'
                        )
                names.append(name)
        if not names:
            raise DatasetNotFoundError(self)
        return names

    def _read_bands(self, name: str) -> NDArray[Any]:
        """The 4-band PNG of ``name`` (RGB + thermal)."""
        path = os.path.join(self.root, 'images', f'{name}.png')
        array = read_image(path)
        if array.ndim != 3 or array.shape[2] != 4:
            bands = 1 if array.ndim == 2 else array.shape[2]
            raise InvalidInputError(
                path, f'expected a 4-band PNG (RGB + thermal), got {bands} band(s)'
            )
        return array

    def _label_path(self, name: str) -> str:
        """``labels/<name>.png``."""
        return os.path.join(self.root, 'labels', f'{name}.png')
