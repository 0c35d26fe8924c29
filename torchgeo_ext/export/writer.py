"""Lightning callback writing georeferenced outputs of ``trainer.predict``."""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import warnings
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import lightning.pytorch as pl
import numpy as np
import pandas as pd
from lightning.pytorch.callbacks import BasePredictionWriter
from rasterio.transform import Affine
from torch import Tensor

from ..errors import InvalidInputError
from .atomic import atomic_output, check_writable_dir, make_output_dir
from .geometry import detections_to_geodataframe
from .raster import (
    as_numpy,
    compression_threads,
    crs_to_string,
    to_affine,
    to_crs,
    write_raster,
)
from .vector import vector_driver, write_vector

__all__ = ['GeoPredictionWriter']

_SAFE = re.compile(r'[^A-Za-z0-9._+-]+')


def _item(value: Any, i: int) -> Any:
    """The i-th sample's entry of a collated batch value (tensor, list or scalar)."""
    if isinstance(value, Tensor | np.ndarray):
        return value[i] if value.ndim > 0 else value
    if isinstance(value, list | tuple) and not isinstance(value, Affine):
        return value[i]
    return value


def _batch_size(prediction: Mapping[str, Any]) -> int:
    for key in (
        'prediction',
        'prediction_label',
        'prediction_bbox_xyxy',
        'prediction_bbox',
    ):
        if key in prediction:
            return len(prediction[key])
    raise ValueError(
        'GeoPredictionWriter: predict_step returned none of prediction, '
        f'prediction_label, prediction_bbox_xyxy, prediction_bbox (got {sorted(prediction)})'
    )


def _fmt(x: float) -> str:
    return f'{x:.10g}'


class GeoPredictionWriter(BasePredictionWriter):
    """Write ``trainer.predict`` outputs as GeoTIFFs and one vector file.

    ``predict_step`` returns a dict with ``prediction`` ((B, H, W) class ids
    or (B, K, H, W) scores) and/or ``prediction_bbox_xyxy`` or
    ``prediction_bbox`` with ``prediction_label`` and ``prediction_score``
    (one entry per sample), or just the ``prediction`` tensor.

    Georeferencing is taken per sample from ``transform`` (6 or 9
    coefficients, rasterio order) in the prediction dict or else the batch
    (TorchGeo 0.10 GeoDataset samples and this library's georeferenced
    samples both carry it). The CRS comes from the writer's ``crs``
    argument, else a ``crs`` key of the prediction/batch, else the ``crs`` of
    the predict dataset (``trainer.predict_dataloaders`` or the datamodule).
    When a prediction map's size differs from the input image's, the
    transform is rescaled to the prediction's pixel size.

    Each sample's raster is written to ``output_dir/<name>.tif`` where
    ``<name>`` is the sample's ``id`` key, else the stem of its ``path`` key,
    else its dataset index (``000042``), else its bounds
    (``x<xmin>_y<ymax>``). All detections go to one vector file
    (``output_dir/<vector_name>``) with columns ``sample``, ``class_id``,
    ``class_name``, ``score`` and the box polygon, sorted by sample name.

    Inputs are normalised once, as in training: a data module normalises its
    own batches; when ``trainer.predict`` runs on plain data loaders (raw
    values, no data module) the writer applies the normalisation the task
    recorded at fit time (``pl_module.normalise``, see
    :class:`~torchgeo_ext.trainers.base.PluginTask`) to each batch's ``image``
    before ``predict_step`` (``normalise_inputs``).

    Under DDP each rank writes its rasters and saves its detections as a part
    file under ``output_dir/.parts`` (so ``output_dir`` must be on a file
    system all ranks see); after a barrier rank 0 merges the parts, drops the
    duplicates that distributed samplers add to even out ranks, and writes
    the vector file, which is therefore identical to a single-process run.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        *,
        crs: Any = None,
        class_names: Sequence[str] | None = None,
        vector_name: str = 'detections.gpkg',
        write_rasters: bool = True,
        write_vectors: bool = True,
        float_nodata: float = math.nan,
        class_nodata: int = 255,
        cog: bool = True,
        write_interval: Literal['batch', 'epoch', 'batch_and_epoch'] = 'batch',
        normalise_inputs: bool | None = None,
        threads: int | None = None,
    ) -> None:
        """Initialise a new GeoPredictionWriter.

        Args:
            output_dir: Folder for the outputs (created if needed).
            crs: CRS of all samples (overrides what the data says).
            class_names: Names of the class ids (vector ``class_name`` column,
                raster ``class_names`` tag).
            vector_name: File name of the detections; its extension picks the
                format (.gpkg, .geojson, .parquet).
            write_rasters: Write ``prediction`` maps as GeoTIFFs.
            write_vectors: Write detections as a vector file.
            float_nodata: Nodata of float score rasters (recorded in the file).
            class_nodata: Nodata of uint8 class rasters.
            cog: Write Cloud-Optimized GeoTIFFs.
            write_interval: Must include 'batch' (rasters are written per batch).
            normalise_inputs: Apply the task's recorded normalisation to
                ``image`` before ``predict_step``: None (default) when
                predicting without a data module, True always, False never.
            threads: GDAL compression threads per raster (None: all cores).

        Raises:
            ValueError: If the write interval excludes batches.
            InvalidInputError: If ``output_dir`` is an existing file or cannot
                be written, or ``vector_name`` has an unknown extension.
        """
        super().__init__(write_interval)
        if not self.interval.on_batch:
            raise ValueError(
                "GeoPredictionWriter needs write_interval 'batch' or 'batch_and_epoch'"
            )
        vector_driver(vector_name)
        # An existing file or an unwritable place fails when the config is read,
        # not after the first batch was predicted.
        self.output_dir = check_writable_dir(output_dir)
        self.crs = None if crs is None else to_crs(crs)
        self.class_names = list(class_names) if class_names is not None else None
        self.vector_name = vector_name
        self.write_rasters = write_rasters
        self.write_vectors = write_vectors
        self.float_nodata = float_nodata
        self.class_nodata = class_nodata
        self.cog = cog
        self.normalise_inputs = normalise_inputs
        compression_threads(threads)  # a bad value fails when the config is read
        self.threads = threads
        self._detections: dict[str, gpd.GeoDataFrame] = {}
        self._has_detections = False
        self._dataset_crs: Any = None
        #: Paths of the rasters written by this rank in the last predict run.
        self.raster_paths: list[Path] = []
        #: Path of the merged vector file (rank 0) after the last predict run.
        self.vector_path: Path | None = None

    # ------------------------------------------------------------------ hooks

    def on_predict_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Reset the state of a previous run."""
        self._detections = {}
        self._has_detections = False
        self._dataset_crs = None
        self.raster_paths = []
        self.vector_path = None
        make_output_dir(self.output_dir)

    def on_predict_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Normalise a raw batch's ``image`` as in training (see the class docs)."""
        apply = self.normalise_inputs
        if apply is None:
            apply = getattr(trainer, 'datamodule', None) is None
        normalise = getattr(pl_module, 'normalise', None)
        if not apply or normalise is None or not isinstance(batch, MutableMapping):
            return
        if isinstance(batch.get('image'), Tensor):
            # in place: Lightning passes this same dict on to predict_step
            batch['image'] = normalise(batch['image'])

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[Any] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write the rasters of one batch and keep its detections."""
        if isinstance(prediction, Tensor):
            prediction = {'prediction': prediction}
        if not isinstance(prediction, Mapping):
            raise TypeError(
                f'GeoPredictionWriter: predict_step must return a dict or tensor, got '
                f'{type(prediction).__name__}'
            )
        batch = batch if isinstance(batch, Mapping) else {}
        for i in range(_batch_size(prediction)):
            name = self._sample_name(
                prediction, batch, batch_indices, i, batch_idx, dataloader_idx
            )
            transform = self._transform(prediction, batch, i, name)
            crs = self._crs(trainer, prediction, batch, i, name)
            if self.write_rasters and 'prediction' in prediction:
                self._write_raster(prediction, batch, i, name, transform, crs)
            if self.write_vectors and (
                'prediction_bbox_xyxy' in prediction or 'prediction_bbox' in prediction
            ):
                self._add_detections(prediction, i, name, transform, crs)

    def on_predict_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> None:
        """Save this rank's detections, then merge them on rank 0 after a barrier."""
        parts = self.output_dir / '.parts'
        stem = Path(self.vector_name).name
        world = trainer.world_size
        if world > 1:
            parts.mkdir(parents=True, exist_ok=True)
            part = parts / f'{stem}.rank{trainer.global_rank}.pkl'
            with atomic_output(part) as tmp, open(tmp, 'wb') as f:
                pickle.dump((self._has_detections, self._detections), f)
            trainer.strategy.barrier('GeoPredictionWriter.parts')
        if trainer.is_global_zero:
            has, merged = self._has_detections, dict(self._detections)
            if world > 1:
                for rank in range(world):
                    part = parts / f'{stem}.rank{rank}.pkl'
                    with open(part, 'rb') as f:
                        has_r, dets = pickle.load(f)
                    has = has or has_r
                    for key, gdf in dets.items():
                        merged.setdefault(key, gdf)  # DDP padding repeats samples
                    part.unlink()
                with contextlib.suppress(OSError):
                    parts.rmdir()
            if has and self.write_vectors:
                self.vector_path = write_vector(
                    self.output_dir / self.vector_name, self._merge(merged)
                )
        if world > 1:
            trainer.strategy.barrier('GeoPredictionWriter.merged')

    # ---------------------------------------------------------------- helpers

    def _sample_name(
        self,
        prediction: Mapping[str, Any],
        batch: Mapping[str, Any],
        batch_indices: Sequence[Any] | None,
        i: int,
        batch_idx: int,
        dataloader_idx: int,
    ) -> str:
        prefix = f'dl{dataloader_idx}_' if dataloader_idx else ''
        for source in (prediction, batch):
            if 'id' in source:
                value = _item(source['id'], i)
                value = value.item() if isinstance(value, Tensor) else value
                return prefix + _SAFE.sub('_', str(value))
            for key in ('path', 'filename', 'filepath'):
                if key in source and isinstance(
                    _item(source[key], i), str | os.PathLike
                ):
                    return prefix + _SAFE.sub('_', Path(_item(source[key], i)).stem)
        if batch_indices is not None and i < len(batch_indices):
            index = batch_indices[i]
            if isinstance(index, int | np.integer):
                return f'{prefix}{int(index):06d}'
        for source in (prediction, batch):
            if 'bounds' in source:
                b = np.asarray(
                    _item(source['bounds'], i).tolist(), dtype=np.float64
                ).ravel()
                if (
                    b.size >= 6
                ):  # TorchGeo 0.10: xmin, xmax, xres, ymin, ymax, yres, ...
                    xmin, ymax = b[0], b[4]
                else:  # (xmin, ymin, xmax, ymax)
                    xmin, ymax = b[0], b[3]
                return f'{prefix}x{_fmt(xmin)}_y{_fmt(ymax)}'
        t = self._transform(prediction, batch, i, f'batch {batch_idx} sample {i}')
        return f'{prefix}x{_fmt(t.c)}_y{_fmt(t.f)}'

    def _transform(
        self, prediction: Mapping[str, Any], batch: Mapping[str, Any], i: int, name: str
    ) -> Affine:
        for source in (prediction, batch):
            if 'transform' in source:
                return to_affine(_item(source['transform'], i))
        raise InvalidInputError(
            None,
            f'sample {name}: no transform in the prediction or the batch; georeferenced '
            'samples must carry a transform (6 affine coefficients)',
        )

    def _crs(
        self,
        trainer: pl.Trainer,
        prediction: Mapping[str, Any],
        batch: Mapping[str, Any],
        i: int,
        name: str,
    ) -> Any:
        if self.crs is not None:
            return self.crs
        for source in (prediction, batch):
            if 'crs' in source and _item(source['crs'], i) is not None:
                return to_crs(_item(source['crs'], i))
        if self._dataset_crs is None:
            self._dataset_crs = self._find_dataset_crs(trainer)
        if self._dataset_crs is None:
            raise InvalidInputError(
                None,
                f'sample {name}: no CRS in the sample, the batch or the predict dataset; '
                'pass crs= to GeoPredictionWriter',
            )
        return self._dataset_crs

    @staticmethod
    def _find_dataset_crs(trainer: pl.Trainer) -> Any:
        candidates: list[Any] = []
        loaders: Any = None
        with contextlib.suppress(Exception):
            loaders = trainer.predict_dataloaders
        if loaders is not None:
            loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
            candidates += [getattr(dl, 'dataset', None) for dl in loaders]
        datamodule = getattr(trainer, 'datamodule', None)
        if datamodule is not None:
            for attr in ('predict_dataset', 'test_dataset', 'dataset', 'val_dataset'):
                candidates.append(getattr(datamodule, attr, None))
        for ds in candidates:
            while ds is not None:
                crs = getattr(ds, 'crs', None)
                if crs is not None:
                    return to_crs(crs)
                ds = getattr(ds, 'dataset', None)  # Subset and similar wrappers
        return None

    def _write_raster(
        self,
        prediction: Mapping[str, Any],
        batch: Mapping[str, Any],
        i: int,
        name: str,
        transform: Affine,
        crs: Any,
    ) -> None:
        arr = _item(prediction['prediction'], i)
        arr = as_numpy(arr)
        image = batch.get('image')
        if isinstance(image, Tensor) and image.ndim >= 3:
            h_in, w_in = image.shape[-2:]
            h_out, w_out = arr.shape[-2:]
            if (h_in, w_in) != (h_out, w_out):
                transform = transform @ Affine.scale(w_in / w_out, h_in / h_out)
        tags: dict[str, Any] = {}
        if self.class_names is not None:
            tags['class_names'] = self.class_names
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            if arr.ndim != 2:
                raise ValueError(f'sample {name}: class-id predictions must be (H, W)')
            nodata: float = self.class_nodata
            if arr.size == 0 or (arr.min() >= 0 and arr.max() < 255):
                arr = arr.astype(np.uint8)
            else:
                arr, nodata = arr.astype(np.int32), np.iinfo(np.int32).min
            band_names: list[str] | None = ['class']
        else:
            arr = arr.astype(np.float32)
            nodata = self.float_nodata
            k = arr.shape[0] if arr.ndim == 3 else 1
            band_names = (
                self.class_names
                if self.class_names is not None and len(self.class_names) == k
                else None
            )
        path = write_raster(
            self.output_dir / f'{name}.tif',
            arr,
            crs=crs,
            transform=transform,
            nodata=nodata,
            band_names=band_names,
            tags=tags,
            cog=self.cog,
            threads=self.threads,
        )
        self.raster_paths.append(path)

    def _add_detections(
        self,
        prediction: Mapping[str, Any],
        i: int,
        name: str,
        transform: Affine,
        crs: Any,
    ) -> None:
        key = (
            'prediction_bbox'
            if 'prediction_bbox' in prediction
            else 'prediction_bbox_xyxy'
        )
        boxes = _item(prediction[key], i)
        labels = _item(prediction['prediction_label'], i)
        scores = (
            _item(prediction['prediction_score'], i)
            if 'prediction_score' in prediction
            else None
        )
        gdf = detections_to_geodataframe(
            boxes, labels, scores, transform, crs, self.class_names
        )
        gdf.insert(0, 'sample', name)
        self._detections[name] = gdf
        self._has_detections = True

    @staticmethod
    def _merge(detections: Mapping[str, gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
        names = sorted(detections)
        frames = [detections[n] for n in names]
        crs = frames[0].crs
        for name, frame in zip(names, frames):
            if frame.crs != crs:
                warnings.warn(
                    f'sample {name}: detections reprojected from '
                    f'{crs_to_string(frame.crs)} to {crs_to_string(crs)}',
                    stacklevel=2,
                )
        frames = [f if f.crs == crs else f.to_crs(crs) for f in frames]
        merged = pd.concat(frames, ignore_index=True)
        return gpd.GeoDataFrame(merged, geometry='geometry', crs=crs)
