"""FMB: the Full-time Multi-modality Benchmark (visible-infrared segmentation)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from matplotlib.figure import Figure
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset

from ..errors import InvalidInputError, MissingInputError
from .mfnet import plot_rgbt_sample, read_image, read_label_png

__all__ = ['FMB']

Sample = dict[str, Any]


class FMB(NonGeoDataset):
    """FMB: full-time multi-modality benchmark of visible-infrared street scenes.

    1,500 registered visible-infrared pairs at 800 x 600 (day and night, fog,
    rain, strong light), labelled with 14 classes plus unlabelled; the
    released split is 1,220 train / 280 test.

    Dataset format (the public release of SegMiF), under ``root``:

    * ``{train,test}/Visible/<name>.png``: RGB;
    * ``{train,test}/Infrared/<name>.png``: infrared (one band, or three equal
      bands, of which the first is used);
    * ``{train,test}/Label/<name>.png``: one band of class ids 0-14
      (``color/`` folders of colour-coded labels, if present, are not read).

    Samples: ``image`` float32 4 x H x W raw 0-255 values (RGB bands 0-2,
    infrared band 3, see :attr:`modalities`; data modules normalise) and
    ``mask`` int64 H x W.

    Dataset classes:

    0. unlabelled
    1. road
    2. sidewalk
    3. building
    4. lamp
    5. sign
    6. vegetation
    7. sky
    8. person
    9. car
    10. truck
    11. bus
    12. motorcycle
    13. bicycle
    14. pole

    The usual protocol leaves ``unlabelled`` out of the loss and the mIoU
    (ignore index 0).

    If you use this dataset in your research, please cite:

    * https://doi.org/10.1109/ICCV51070.2023.00745
    """

    classes: ClassVar[list[str]] = [
        'unlabelled',
        'road',
        'sidewalk',
        'building',
        'lamp',
        'sign',
        'vegetation',
        'sky',
        'person',
        'car',
        'truck',
        'bus',
        'motorcycle',
        'bicycle',
        'pole',
    ]
    #: Display colours, one per class.
    colors: ClassVar[list[tuple[int, int, int]]] = [
        (0, 0, 0),
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (70, 130, 180),
        (220, 20, 60),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 0, 230),
        (119, 11, 32),
        (153, 153, 153),
    ]
    splits = ('train', 'test')
    #: Band indices of each modality in ``image``.
    modalities: ClassVar[dict[str, list[int]]] = {'rgb': [0, 1, 2], 'thermal': [3]}
    _folders = ('Visible', 'Infrared', 'Label')

    def __init__(
        self,
        root: str | os.PathLike[str] = 'data',
        split: Literal['train', 'test'] = 'train',
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialise a new FMB dataset.

        Args:
            root: Folder holding ``train/`` and ``test/``.
            split: ``train`` or ``test``.
            transforms: A function applied to each sample.

        Raises:
            ValueError: For an unknown split.
            DatasetNotFoundError: If the split's ``Visible`` folder is missing or empty.
            MissingInputError: If an image has no infrared partner or no label.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        self.root = os.fspath(root)
        self.split = split
        self.transforms = transforms
        visible = os.path.join(self.root, split, 'Visible')
        if not os.path.isdir(visible):
            raise DatasetNotFoundError(self)
        #: Image file names of the split, sorted.
        self.names = sorted(
            f for f in os.listdir(visible) if f.lower().endswith('.png')
        )
        if not self.names:
            raise DatasetNotFoundError(self)
        for name in self.names:
            for folder in self._folders[1:]:
                path = os.path.join(self.root, split, folder, name)
                if not os.path.isfile(path):
                    raise MissingInputError(
                        path, f'visible image {name} has no {folder} partner'
                    )

    def __len__(self) -> int:
        """Return the number of samples.

        Returns:
            Length of the split.
        """
        return len(self.names)

    def _read(self, folder: str, name: str) -> np.ndarray[Any, Any]:
        return read_image(os.path.join(self.root, self.split, folder, name))

    def __getitem__(self, index: int) -> Sample:
        """Return a sample.

        Args:
            index: Index of the sample.

        Returns:
            ``image`` (4, H, W) float32 and ``mask`` (H, W) int64.

        Raises:
            InvalidInputError: If a file is unreadable or the modalities disagree.
        """
        name = self.names[index]
        rgb = self._read('Visible', name)
        path = os.path.join(self.root, self.split, 'Visible', name)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise InvalidInputError(
                path, f'expected an RGB image, got shape {rgb.shape}'
            )
        ir = self._read('Infrared', name)
        if ir.ndim == 3:
            ir = ir[..., 0]
        if ir.shape != rgb.shape[:2]:
            raise InvalidInputError(
                os.path.join(self.root, self.split, 'Infrared', name),
                f'infrared is {ir.shape[1]} x {ir.shape[0]}, visible is '
                f'{rgb.shape[1]} x {rgb.shape[0]}',
            )
        stacked = np.concatenate([rgb[..., :3], ir[..., None]], axis=-1)
        image = (
            torch.from_numpy(stacked.astype(np.float32)).permute(2, 0, 1).contiguous()
        )
        mask = read_label_png(
            os.path.join(self.root, self.split, 'Label', name),
            len(self.classes),
            rgb.shape[:2],
        )
        sample: Sample = {'image': image, 'mask': mask}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self, sample: Sample, show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Plot a sample: visible, infrared, mask and (if present) prediction.

        Args:
            sample: A sample from :meth:`__getitem__` (``prediction`` optional).
            show_titles: Title each panel.
            suptitle: Figure title.

        Returns:
            The figure.
        """
        return plot_rgbt_sample(
            sample, self.modalities, self.classes, self.colors, show_titles, suptitle
        )
