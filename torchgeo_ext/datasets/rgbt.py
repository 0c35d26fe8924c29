"""Base of the RGB-thermal segmentation datasets (FMB, MFNet): reading, samples, plots."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor
from torchgeo.datasets import NonGeoDataset

from ..errors import InvalidInputError

__all__ = [
    'RGBTSegmentationDataset',
    'plot_rgbt_sample',
    'read_image',
    'read_label_png',
]

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


class RGBTSegmentationDataset(NonGeoDataset):
    """Base of RGB-thermal segmentation datasets: the sample assembly, shared.

    A subclass sets :attr:`classes`, :attr:`colors`, :attr:`splits` and
    implements :meth:`_list_names` (the split's image names, checked for
    partners), :meth:`_read_bands` (the (H, W, 4) RGB + thermal pixels of a
    name) and :meth:`_label_path`. Samples: ``image`` float32 4 x H x W raw
    values (RGB bands 0-2, thermal band 3, see :attr:`modalities`) and
    ``mask`` int64 H x W.
    """

    classes: ClassVar[list[str]]
    #: Display colours, one per class.
    colors: ClassVar[list[tuple[int, int, int]]]
    splits: tuple[str, ...]
    #: Band indices of each modality in ``image``.
    modalities: ClassVar[dict[str, list[int]]] = {'rgb': [0, 1, 2], 'thermal': [3]}

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        transforms: Callable[[Sample], Sample] | None,
    ) -> None:
        """Check the split, then list its samples (:meth:`_list_names`).

        Args:
            root: The dataset root.
            split: One of :attr:`splits`.
            transforms: A function applied to each sample.

        Raises:
            ValueError: For an unknown split.
        """
        if split not in self.splits:
            raise ValueError(f'split must be one of {self.splits}, got {split!r}')
        self.root = os.fspath(root)
        self.split = split
        self.transforms = transforms
        #: Image names of the split.
        self.names: list[str] = self._list_names()

    @abc.abstractmethod
    def _list_names(self) -> list[str]:
        """The split's image names, each with its partner files checked."""

    @abc.abstractmethod
    def _read_bands(self, name: str) -> NDArray[Any]:
        """The (H, W, 4) RGB + thermal pixels of ``name``, checked."""

    @abc.abstractmethod
    def _label_path(self, name: str) -> str:
        """The label PNG of ``name``."""

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
            InvalidInputError: If a file is unreadable, the modalities disagree
                or the label is bad.
        """
        name = self.names[index]
        bands = self._read_bands(name)
        image = torch.from_numpy(bands.astype(np.float32)).permute(2, 0, 1).contiguous()
        mask = read_label_png(
            self._label_path(name), len(self.classes), (bands.shape[0], bands.shape[1])
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
