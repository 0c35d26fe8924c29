"""MFNet: RGB-thermal semantic segmentation of urban driving scenes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor
from torchgeo.datasets import DatasetNotFoundError, NonGeoDataset

from ..errors import InvalidInputError, MissingInputError

__all__ = ['MFNet', 'plot_rgbt_sample', 'read_image', 'read_label_png']

Sample = dict[str, Any]


def read_image(path: str, what: str = 'image') -> NDArray[Any]:
    """Read an image file (PNG) as stored: (H, W) or (H, W, bands).

    Args:
        path: The file.
        what: What it holds, for the error message.

    Returns:
        The pixels.

    Raises:
        InvalidInputError: If the file cannot be read.
    """
    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except OSError as error:
        raise InvalidInputError(path, f'cannot read {what} ({error})') from error


def read_label_png(path: str, num_classes: int, shape: tuple[int, int]) -> Tensor:
    """Read a label PNG of class ids and check it.

    Args:
        path: The PNG (one band of uint8 class ids).
        num_classes: Valid ids are ``0 .. num_classes - 1``.
        shape: Expected (H, W), that of the image.

    Returns:
        int64 (H, W) class ids.

    Raises:
        InvalidInputError: If the file is unreadable, not one band (e.g. a
            colour-coded label), of another size, or holds unknown ids.
    """
    array = read_image(path, 'label')
    if array.ndim != 2:
        raise InvalidInputError(
            path,
            f'expected one band of class ids, got {array.shape[2]} bands '
            '(a colour-coded label?)',
        )
    if array.shape != shape:
        raise InvalidInputError(
            path,
            f'label is {array.shape[1]} x {array.shape[0]}, image is '
            f'{shape[1]} x {shape[0]}',
        )
    top = int(array.max()) if array.size else 0
    if top >= num_classes:
        raise InvalidInputError(
            path, f'class id {top} found; valid ids are 0..{num_classes - 1}'
        )
    return torch.from_numpy(array.astype(np.int64))


def _stretch(band: NDArray[Any]) -> NDArray[np.float64]:
    """Scale to [0, 1] between the 2nd and 98th percentiles, for display."""
    band = band.astype(np.float64)
    lo, hi = np.percentile(band, (2, 98)) if band.size else (0.0, 1.0)
    return np.asarray(np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1))


def plot_rgbt_sample(
    sample: Sample,
    modalities: dict[str, list[int]],
    classes: Sequence[str],
    colors: Sequence[tuple[int, int, int]],
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Plot an RGB-thermal segmentation sample: RGB, thermal, mask, prediction.

    Args:
        sample: ``image`` (C, H, W), ``mask`` (H, W), optionally ``prediction``.
        modalities: Band indices of ``rgb`` and ``thermal`` in ``image``.
        classes: Class names.
        colors: One RGB colour (0-255) per class.
        show_titles: Title each panel.
        suptitle: Figure title.

    Returns:
        The figure.
    """
    image = sample['image'].detach().cpu().numpy()
    panels: list[tuple[str, NDArray[Any], dict[str, Any]]] = []
    if 'rgb' in modalities:
        rgb = np.stack([_stretch(image[b]) for b in modalities['rgb']], axis=-1)
        panels.append(('RGB', rgb, {}))
    if 'thermal' in modalities:
        thermal = _stretch(image[modalities['thermal'][0]])
        panels.append(('Thermal', thermal, {'cmap': 'inferno'}))
    cmap = ListedColormap(np.asarray(colors, dtype=np.float64) / 255)
    style = {'cmap': cmap, 'vmin': 0, 'vmax': len(classes) - 1, 'interpolation': 'none'}
    for key, title in (('mask', 'Mask'), ('prediction', 'Prediction')):
        if key in sample:
            panels.append((title, sample[key].detach().cpu().numpy().squeeze(), style))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.5))
    axes = np.atleast_1d(axes)
    for ax, (title, data, kwargs) in zip(axes, panels):
        ax.imshow(data, **kwargs)
        ax.axis('off')
        if show_titles:
            ax.set_title(title)
    if suptitle is not None:
        fig.suptitle(suptitle)
    return fig


class MFNet(NonGeoDataset):
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
    #: Band indices of each modality in ``image``.
    modalities: ClassVar[dict[str, list[int]]] = {'rgb': [0, 1, 2], 'thermal': [3]}

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
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        self.root = os.fspath(root)
        self.split = split
        self.transforms = transforms
        list_path = os.path.join(self.root, f'{split}.txt')
        if not os.path.isfile(list_path) or not os.path.isdir(
            os.path.join(self.root, 'images')
        ):
            raise DatasetNotFoundError(self)
        #: Image names of the split, in list order.
        self.names: list[str] = []
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
                self.names.append(name)
        if not self.names:
            raise DatasetNotFoundError(self)

    def __len__(self) -> int:
        """Return the number of samples.

        Returns:
            Length of the split.
        """
        return len(self.names)

    def __getitem__(self, index: int) -> Sample:
        """Return a sample.

        Args:
            index: Index of the sample.

        Returns:
            ``image`` (4, H, W) float32 and ``mask`` (H, W) int64.

        Raises:
            InvalidInputError: If the image is not a 4-band PNG or the label is bad.
        """
        name = self.names[index]
        path = os.path.join(self.root, 'images', f'{name}.png')
        array = read_image(path)
        if array.ndim != 3 or array.shape[2] != 4:
            bands = 1 if array.ndim == 2 else array.shape[2]
            raise InvalidInputError(
                path, f'expected a 4-band PNG (RGB + thermal), got {bands} band(s)'
            )
        image = torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1).contiguous()
        mask = read_label_png(
            os.path.join(self.root, 'labels', f'{name}.png'),
            len(self.classes),
            (array.shape[0], array.shape[1]),
        )
        sample: Sample = {'image': image, 'mask': mask}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def plot(
        self, sample: Sample, show_titles: bool = True, suptitle: str | None = None
    ) -> Figure:
        """Plot a sample: RGB, thermal, mask and (if present) prediction.

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
