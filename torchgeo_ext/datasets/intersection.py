"""Intersections of GeoDatasets whose samples carry one float64 georeference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import rasterio.transform
import torch
from torch import Tensor
from torchgeo.datasets import GeoDataset, IntersectionDataset
from torchgeo.datasets.utils import GeoSlice

Sample = dict[str, Any]

#: Keys holding the georeference of a sample (one copy per dataset in TorchGeo).
GEOREFERENCE_KEYS = ('bounds', 'transform')


def _first_copy(value: Tensor) -> Tensor:
    """The first of several concatenated 9-value georeference vectors."""
    if value.ndim == 1 and value.numel() > 9 and value.numel() % 9 == 0:
        return value[:9]
    return value


def merge_intersection_samples(samples: Sequence[Sample]) -> Sample:
    """Merge the samples that the datasets of an intersection return for one query.

    ``image`` tensors are concatenated along the band dimension (``-3``) in
    dataset order; ``bounds`` and ``transform`` are taken from the first
    sample (and cut to one 9-value copy if TorchGeo's ``concat_samples`` had
    already concatenated several in a nested plain ``&``); every other key
    must come from a single dataset.

    Args:
        samples: One sample per dataset of the intersection, same query.

    Returns:
        The merged sample.

    Raises:
        ValueError: If a key other than ``image``, ``bounds`` and ``transform``
            is in more than one sample (two label datasets, for example).
    """
    merged: Sample = {}
    images: list[Tensor] = []
    for sample in samples:
        for key, value in sample.items():
            if key == 'image':
                images.append(value)
            elif key in GEOREFERENCE_KEYS:
                if key not in merged:
                    merged[key] = _first_copy(value)
            elif key in merged:
                raise ValueError(
                    f'{key!r} is returned by more than one dataset of the '
                    'intersection; merge them with a custom collate_fn'
                )
            else:
                merged[key] = value
    if images:
        merged['image'] = images[0] if len(images) == 1 else torch.cat(images, -3)
    return merged


def query_georeference(dataset: GeoDataset, index: GeoSlice) -> tuple[Tensor, Tensor]:
    """Float64 ``bounds`` and ``transform`` of a query, TorchGeo's layout.

    Args:
        dataset: The dataset queried (fills in the parts of the slice not given).
        index: The ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` query.

    Returns:
        ``bounds`` (9 values: x start, stop, step, y start, stop, step, t start
        and stop as POSIX seconds, t step) and ``transform`` (the 9 affine
        coefficients, rasterio order), both float64.
    """
    x, y, t = dataset._disambiguate_slice(index)
    bounds = torch.tensor(
        [
            x.start,
            x.stop,
            x.step,
            y.start,
            y.stop,
            y.step,
            t.start.timestamp(),
            t.stop.timestamp(),
            t.step,
        ],
        dtype=torch.float64,
    )
    affine = rasterio.transform.from_origin(x.start, y.stop, x.step, y.step)
    return bounds, torch.tensor(tuple(affine), dtype=torch.float64)


class StackedIntersectionDataset(IntersectionDataset):
    """TorchGeo's :class:`~torchgeo.datasets.IntersectionDataset` with one float64 georeference.

    Samples: the images of all datasets stacked along the bands (in dataset
    order), the other keys of each dataset (``mask``, ``bbox_xyxy``, ...),
    and one ``bounds`` and ``transform`` (9 values each, TorchGeo's layout)
    computed in float64 from the query. ``dataset2`` is reprojected to the CRS
    and resolution of ``dataset1``, as in TorchGeo; ``&`` on this dataset
    returns another :class:`StackedIntersectionDataset`.
    """

    def __init__(
        self,
        dataset1: GeoDataset,
        dataset2: GeoDataset,
        spatial_only: bool = False,
        collate_fn: Callable[[Sequence[Sample]], Sample] = merge_intersection_samples,
        transforms: Callable[[Sample], Sample] | None = None,
    ) -> None:
        """Initialise a new StackedIntersectionDataset.

        Args:
            dataset1: The first dataset (fixes CRS and resolution).
            dataset2: The second dataset.
            spatial_only: If True, ignore the temporal dimension.
            collate_fn: Merges the two samples of a query.
            transforms: A function/transform that takes a sample and returns a
                transformed version.
        """
        super().__init__(dataset1, dataset2, spatial_only, collate_fn, transforms)

    def __getitem__(self, index: GeoSlice) -> Sample:
        """Retrieve the merged sample of a query.

        Args:
            index: ``[xmin:xmax:xres, ymin:ymax:yres, tmin:tmax:tres]`` coordinates.

        Returns:
            The merged sample with float64 ``bounds`` and ``transform``.

        Raises:
            IndexError: If *index* is not found in one of the datasets.
        """
        sample = self.collate_fn([ds[index] for ds in self.datasets])
        sample['bounds'], sample['transform'] = query_georeference(self, index)
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def __and__(self, other: GeoDataset) -> StackedIntersectionDataset:
        """Intersect with one more dataset, keeping the single georeference.

        Args:
            other: Another dataset.

        Returns:
            The intersection.
        """
        return StackedIntersectionDataset(self, other)


def intersect(
    *datasets: GeoDataset,
    spatial_only: bool = False,
    transforms: Callable[[Sample], Sample] | None = None,
) -> StackedIntersectionDataset:
    """Intersect any number of datasets into one :class:`StackedIntersectionDataset`.

    ``intersect(rgb, ir, labels)`` is ``(rgb & ir) & labels`` with one float64
    georeference per sample; the first dataset fixes CRS and resolution.

    Args:
        *datasets: Two or more GeoDatasets.
        spatial_only: If True, ignore the temporal dimension.
        transforms: Applied to each merged sample.

    Returns:
        The intersection.

    Raises:
        ValueError: With fewer than two datasets.
    """
    if len(datasets) < 2:
        raise ValueError('intersect needs at least two datasets')
    result = StackedIntersectionDataset(
        datasets[0], datasets[1], spatial_only=spatial_only
    )
    for dataset in datasets[2:]:
        result = StackedIntersectionDataset(result, dataset, spatial_only=spatial_only)
    result.transforms = transforms
    return result
