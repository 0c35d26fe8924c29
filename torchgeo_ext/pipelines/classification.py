"""Whole-scene maps from patch classifiers (MIViT, M3amba)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..datasets.hsi_lidar import HSILiDARDataset
from ..export.atomic import atomic_output
from ..export.raster import write_raster
from .tiling import eval_mode

#: Nodata of the class maps (uint8).
NODATA = 255


def _pad(image: Tensor, patch_size: int, padding: str) -> Tensor:
    half = patch_size // 2
    pad = (half, patch_size - 1 - half, half, patch_size - 1 - half)
    if padding == 'constant':
        return F.pad(image, pad)
    if padding == 'symmetric':  # edge pixel repeated (numpy 'symmetric')
        h, w = image.shape[-2:]
        rows = torch.arange(-pad[2], h + pad[3], device=image.device)
        cols = torch.arange(-pad[0], w + pad[1], device=image.device)
        rows = _mirror(rows, h)
        cols = _mirror(cols, w)
        return image[:, rows][:, :, cols]
    return F.pad(image[None], pad, mode='reflect')[0]


def _mirror(index: Tensor, n: int) -> Tensor:
    """Indices of numpy's 'symmetric' padding (period 2n)."""
    period = index.remainder(2 * n)
    return torch.where(period < n, period, 2 * n - 1 - period)


def classify_scene(
    model: Callable[[Tensor], Tensor],
    image: Tensor,
    patch_size: int,
    *,
    batch_size: int = 256,
    padding: str = 'symmetric',
    mask: Tensor | None = None,
    device: str | torch.device = 'cpu',
) -> tuple[Tensor, Tensor]:
    """Classify every pixel of a scene from its surrounding patch.

    Patches are cut from the scene as strided views (no copy is materialised)
    and classified in batches. The model is any callable mapping patches to
    class scores (probabilities or logits), e.g. ``task.classify`` of a
    :class:`~torchgeo_ext.trainers.classification.PatchClassificationTask`; a
    module, or the module of a bound method, runs in eval mode (restored after).

    Args:
        model: Callable from B x C x P x P patches to B x K scores.
        image: C x H x W scene, scaled as the model's training patches.
        patch_size: ``P`` (the labelled pixel at index ``P // 2``).
        batch_size: Patches per model call.
        padding: ``'symmetric'``, ``'reflect'`` or ``'constant'`` beyond the
            scene border (as the training dataset).
        mask: Optional H x W bool: classify only these pixels (others get
            class -1 and score NaN).
        device: Device of the model.

    Returns:
        int64 H x W classes and float32 H x W scores (the class's softmax
        probability when the model returns logits or probabilities).

    Raises:
        ValueError: For a bad padding, patch size or mask shape.
    """
    if padding not in ('symmetric', 'reflect', 'constant'):
        raise ValueError(f'unknown padding {padding!r}')
    if patch_size < 1:
        raise ValueError(f'patch_size must be positive, got {patch_size}')
    _, h, w = image.shape
    if mask is not None and mask.shape != (h, w):
        raise ValueError(f'mask is {tuple(mask.shape)}, the scene {h} x {w}')
    padded = _pad(image.float(), patch_size, padding)
    # (C, H, W, P, P) view of all patches; indexing copies only a batch.
    windows = padded.unfold(1, patch_size, 1).unfold(2, patch_size, 1)
    wanted = (
        torch.ones(h, w, dtype=torch.bool, device=image.device)
        if mask is None
        else mask.bool()
    )
    rows, cols = torch.nonzero(wanted, as_tuple=True)
    labels = torch.full((h, w), -1, dtype=torch.int64)
    scores = torch.full((h, w), float('nan'), dtype=torch.float32)
    for start in range(0, len(rows), batch_size):
        r, c = rows[start : start + batch_size], cols[start : start + batch_size]
        batch = windows[:, r, c].permute(1, 0, 2, 3).contiguous().to(device)
        with torch.no_grad(), eval_mode(model):
            out = model(batch).float()
        if not bool(((out >= 0) & (out <= 1)).all()) or not torch.allclose(
            out.sum(1), torch.ones(len(out), device=out.device), atol=1e-4
        ):
            out = out.softmax(dim=1)
        score, label = out.max(dim=1)
        labels[r, c] = label.cpu()
        scores[r, c] = score.cpu()
    return labels, scores


def _write_pixel_grid(
    path: str | os.PathLike[str],
    array: np.ndarray[Any, Any],
    tags: Mapping[str, str],
    band_names: Sequence[str],
) -> Path:
    """A GeoTIFF without CRS, on the identity (pixel) transform, atomically."""
    import rasterio
    from rasterio.transform import Affine

    with (
        atomic_output(path) as tmp,
        rasterio.open(
            tmp,
            'w',
            driver='GTiff',
            width=array.shape[-1],
            height=array.shape[-2],
            count=array.shape[0],
            dtype=array.dtype,
            transform=Affine.identity(),
            nodata=NODATA,
            compress='deflate',
            tiled=True,
        ) as dst,
    ):
        dst.write(array)
        dst.update_tags(**tags)
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)
    return Path(path)


def classification_map(
    model: Callable[[Tensor], Tensor],
    dataset: HSILiDARDataset,
    output: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    labelled_only: bool = False,
    scores: bool = False,
    device: str | torch.device = 'cpu',
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write the class map of a dataset's whole scene as a GeoTIFF.

    With a georeferenced release (the Houston 2013 GeoTIFFs) the map has the
    scene's CRS and transform; otherwise it is a pixel grid (identity
    transform, no CRS, tag ``georeferenced=false``): the ``.mat`` releases
    carry no georeferencing.

    Args:
        model: Callable from B x C x P x P patches to B x K scores.
        dataset: The dataset (its patch size, padding and scaling are used).
        output: Output GeoTIFF (written atomically).
        batch_size: Patches per model call.
        labelled_only: Classify only the pixels labelled in the dataset's
            split (others are nodata); default every pixel.
        scores: Add a second band with the class probability scaled to
            0-254 (255 nodata).
        device: Device of the model.
        class_names: Class names stored in the ``class_names`` tag (default:
            the dataset's).

    Returns:
        The output path.
    """
    scene = dataset.scene()
    mask = scene['mask'] >= 0 if labelled_only else None
    labels, probability = classify_scene(
        model,
        scene['image'],
        dataset.patch_size,
        batch_size=batch_size,
        padding=dataset.padding,
        mask=mask,
        device=device,
    )
    bands = [np.where(labels >= 0, labels, NODATA).astype(np.uint8)]
    names = ['class']
    if scores:
        scaled = np.nan_to_num(probability.numpy() * 254, nan=NODATA)
        bands.append(np.rint(scaled).astype(np.uint8))
        names.append('probability_x254')
    array = np.stack(bands)
    classes = list(class_names if class_names is not None else dataset.classes)
    tags = {'class_names': json.dumps(classes)}
    if dataset.crs is not None and dataset.transform is not None:
        return write_raster(
            output,
            array,
            crs=dataset.crs,
            transform=dataset.transform,
            nodata=NODATA,
            band_names=names,
            tags=tags,
        )
    return _write_pixel_grid(output, array, {**tags, 'georeferenced': 'false'}, names)


class DensePatchClassifier:
    """A patch classifier as a dense model: every pixel of a tile from its patch.

    Wraps a patch classifier for
    :func:`~torchgeo_ext.pipelines.tiling.predict_raster`: raw tile bands are
    scaled with ``normalisation`` (``(raw - offset) / scale``), every pixel's
    patch is cut from the tile (``padding`` beyond its border) and
    classified; the output is B x K probabilities.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Tensor],
        patch_size: int,
        *,
        normalisation: Mapping[str, Sequence[float] | float] | None = None,
        padding: str = 'symmetric',
        batch_size: int = 1024,
    ) -> None:
        """Initialise a new DensePatchClassifier.

        Args:
            model: Callable from B x C x P x P patches to B x K scores.
            patch_size: ``P``.
            normalisation: ``offset`` and ``scale`` per band (or one each);
                None: tiles are used as read.
            padding: Padding beyond each tile's border.
            batch_size: Patches per model call.
        """
        self.model = model
        self.patch_size = patch_size
        self.normalisation = normalisation
        self.padding = padding
        self.batch_size = batch_size

    def __call__(self, tiles: Tensor) -> Tensor:
        """Classify every pixel of a batch of tiles.

        Args:
            tiles: B x C x T x T raw tiles.

        Returns:
            B x K x T x T class probabilities.
        """
        x = tiles.float()
        if self.normalisation is not None:
            offset = torch.as_tensor(self.normalisation['offset'], dtype=torch.float32)
            scale = torch.as_tensor(self.normalisation['scale'], dtype=torch.float32)
            x = (x - offset.reshape(-1, 1, 1).to(x)) / scale.reshape(-1, 1, 1).to(x)
        out = []
        for tile in x:
            padded = _pad(tile, self.patch_size, self.padding)
            windows = padded.unfold(1, self.patch_size, 1).unfold(2, self.patch_size, 1)
            h, w = tile.shape[-2:]
            p = self.patch_size
            flat = windows.permute(1, 2, 0, 3, 4).reshape(h * w, -1, p, p)
            probs = []
            for start in range(0, h * w, self.batch_size):
                with torch.no_grad(), eval_mode(self.model):
                    scores = self.model(flat[start : start + self.batch_size]).float()
                if not bool(((scores >= 0) & (scores <= 1)).all()):
                    scores = scores.softmax(dim=1)
                probs.append(scores)
            out.append(torch.cat(probs).T.reshape(-1, h, w))
        return torch.stack(out)


def classify_raster(
    model: Callable[[Tensor], Tensor],
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    patch_size: int,
    *,
    normalisation: Mapping[str, Sequence[float] | float] | None = None,
    padding: str = 'symmetric',
    tile_size: int = 256,
    batch_size: int = 1024,
    class_names: Sequence[str] | None = None,
    device: str | torch.device = 'cpu',
    progress: bool = False,
) -> Path:
    """Class map of georeferenced rasters of any size (same CRS and transform).

    Tiles of ``tile_size`` overlapping by ``patch_size`` are classified pixel
    by pixel (:class:`DensePatchClassifier`) and joined with ``crop`` blending,
    so every pixel away from the raster border sees exactly its own patch.

    Args:
        model: Callable from B x C x P x P patches to B x K scores.
        inputs: One raster or co-registered rasters stacked in band order
            (e.g. HSI then LiDAR).
        output: Output class GeoTIFF (uint8, nodata 255).
        patch_size: ``P`` of the classifier.
        normalisation: Scaling of the raw bands used in training (a task's
            ``normalisation``).
        padding: Padding beyond the raster border (as in training).
        tile_size: Tile side.
        batch_size: Patches per model call.
        class_names: Class names stored in the output's tags.
        device: Device of the model.
        progress: Show a progress bar.

    Returns:
        The output path.
    """
    from .tiling import predict_raster

    dense = DensePatchClassifier(
        model,
        patch_size,
        normalisation=normalisation,
        padding=padding,
        batch_size=batch_size,
    )
    overlap = patch_size + patch_size % 2
    return predict_raster(
        dense,
        inputs,
        output,
        tile_size=max(tile_size, 2 * overlap + 2),
        overlap=overlap,
        batch_size=1,
        blend='crop',
        output_kind='classes',
        class_names=class_names,
        device=device,
        progress=progress,
    )
