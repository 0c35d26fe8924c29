"""FMB: the Full-time Multi-modality Benchmark (visible-infrared segmentation)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray
from torchgeo.datasets import DatasetNotFoundError

from ..errors import InvalidInputError, MissingInputError
from .rgbt import RGBTSegmentationDataset, read_image

__all__ = ['FMB']

Sample = dict[str, Any]


class FMB(RGBTSegmentationDataset):
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
        super().__init__(root, split, transforms)

    def _list_names(self) -> list[str]:
        """The ``Visible`` PNGs, sorted, each checked to have its partners."""
        visible = os.path.join(self.root, self.split, 'Visible')
        if not os.path.isdir(visible):
            raise DatasetNotFoundError(self)
        names = sorted(f for f in os.listdir(visible) if f.lower().endswith('.png'))
        if not names:
            raise DatasetNotFoundError(self)
        for name in names:
            for folder in self._folders[1:]:
                path = os.path.join(self.root, self.split, folder, name)
                if not os.path.isfile(path):
                    raise MissingInputError(
                        path, f'visible image {name} has no {folder} partner'
                    )
        return names

    def _read_bands(self, name: str) -> NDArray[Any]:
        """Visible RGB and the first infrared band of ``name``, stacked (H, W, 4)."""
        path = os.path.join(self.root, self.split, 'Visible', name)
        rgb = read_image(path)
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            raise InvalidInputError(
                path, f'expected an RGB image, got shape {rgb.shape}'
            )
        ir = read_image(os.path.join(self.root, self.split, 'Infrared', name))
        if ir.ndim == 3:
            ir = ir[..., 0]
        if ir.shape != rgb.shape[:2]:
            raise InvalidInputError(
                os.path.join(self.root, self.split, 'Infrared', name),
                f'infrared is {ir.shape[1]} x {ir.shape[0]}, visible is '
                f'{rgb.shape[1]} x {rgb.shape[0]}',
            )
        return np.concatenate([rgb[..., :3], ir[..., None]], axis=-1)

    def _label_path(self, name: str) -> str:
        """``<split>/Label/<name>``."""
        return os.path.join(self.root, self.split, 'Label', name)
