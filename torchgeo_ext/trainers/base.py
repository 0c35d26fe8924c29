"""The base class of this library's Lightning tasks, and checkpoint loading by class.

Every task of :mod:`torchgeo_ext.trainers` derives from :class:`PluginTask`,
which records its own class path in each checkpoint. The command-line tools
(``detect``, ``segment``, ``anomaly``) can then rebuild the right task from a
checkpoint alone with :func:`load_task`.

Input normalisation (one layer, TorchGeo's convention): datasets return raw
values, data modules normalise, and a :class:`PluginTask` records at fit time
what its data module used, as per-band ``offset`` and ``scale``
(``normalised = (raw - offset) / scale``), in its ``normalisation``
hyperparameter. The record travels in every checkpoint, so
:meth:`PluginTask.normalise` (used by ``detect``, ``segment``,
``detect_images`` and the prediction writer) applies to raw rasters exactly
what training applied.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchgeo.tasks import BaseTask

from ..errors import InvalidInputError, MissingInputError

#: Checkpoint key holding the task's import path.
TASK_CLASS_KEY = 'torchgeo_ext_task_class'
#: Hyperparameter holding the input normalisation recorded at fit time.
NORMALISATION_KEY = 'normalisation'
#: Checkpoint key holding the same record (read back whatever the task's
#: ``__init__`` accepts).
NORMALISATION_CHECKPOINT_KEY = 'torchgeo_ext_normalisation'

#: A recorded normalisation: per-band (or one shared) ``offset`` and ``scale``.
NormalisationRecord = dict[str, list[float]]


def _floats(value: Any, what: str) -> list[float]:
    """A scalar, sequence or tensor as a non-empty list of finite floats."""
    if isinstance(value, Tensor):
        values = [float(v) for v in value.detach().cpu().reshape(-1).tolist()]
    elif isinstance(value, int | float):
        values = [float(value)]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = [float(v) for v in value]
    else:
        raise TypeError(f'normalisation {what} must be numbers, got {value!r}')
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f'normalisation {what} must be finite numbers: {values}')
    return values


def normalisation_record(value: Any) -> NormalisationRecord | None:
    """Convert a data module's normalisation to the form tasks record.

    Accepted: ``None`` (nothing recorded); a mapping or an object with
    ``offset`` and ``scale`` (this library's form), or with ``mean`` and
    ``std`` (TorchGeo / Kornia's ``Normalize``); each a number (all bands) or
    one number per band.

    Args:
        value: The normalisation.

    Returns:
        ``{'offset': [...], 'scale': [...]}`` (lists of equal length, or one of
        them of length 1), or None.

    Raises:
        ValueError: If the value has neither form, or a scale is not positive.
        TypeError: If a value is not numbers.
    """
    if value is None:
        return None

    def get(name: str) -> Any:
        if isinstance(value, Mapping):
            return value.get(name)
        return getattr(value, name, None)

    for offset_name, scale_name in (('offset', 'scale'), ('mean', 'std')):
        offset, scale = get(offset_name), get(scale_name)
        if offset is not None and scale is not None:
            break
    else:
        raise ValueError(
            f'a normalisation needs offset and scale (or mean and std), got {value!r}'
        )
    offsets = _floats(offset, 'offset')
    scales = _floats(scale, 'scale')
    if any(s <= 0 for s in scales):
        raise ValueError(f'normalisation scale must be positive: {scales}')
    if len(offsets) != len(scales) and 1 not in (len(offsets), len(scales)):
        raise ValueError(
            f'normalisation has {len(offsets)} offsets but {len(scales)} scales'
        )
    return {'offset': offsets, 'scale': scales}


def datamodule_normalisation(datamodule: Any) -> NormalisationRecord | None:
    """The normalisation a data module applies, as a record.

    A data module of this library says it with its ``normalisation``
    attribute (None: it normalises nothing it can describe). Other TorchGeo
    data modules normalise with their ``mean`` and ``std``.

    Args:
        datamodule: A LightningDataModule (or None).

    Returns:
        The record, or None if the data module does not say.
    """
    if datamodule is None:
        return None
    if hasattr(datamodule, 'normalisation'):
        return normalisation_record(datamodule.normalisation)
    if hasattr(datamodule, 'mean') and hasattr(datamodule, 'std'):
        return normalisation_record({'mean': datamodule.mean, 'std': datamodule.std})
    return None


def datamodule_class_names(datamodule: Any) -> list[str] | None:
    """The class names a data module's data use, if it says.

    Looked up as the data module's ``class_names`` or ``classes``, then the
    ``classes`` of its training dataset (TorchGeo datasets list their classes
    there; a ``Subset`` is unwrapped).

    Args:
        datamodule: A LightningDataModule (or None).

    Returns:
        The names, or None.
    """
    if datamodule is None:
        return None
    candidates = [datamodule, getattr(datamodule, 'train_dataset', None)]
    dataset = candidates[1]
    while dataset is not None and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
        candidates.append(dataset)
    for owner in candidates:
        # segmentation of labelled objects: background first, then the classes
        for name in ('segmentation_classes', 'class_names', 'classes'):
            names = getattr(owner, name, None)
            if (
                isinstance(names, Sequence)
                and not isinstance(names, str)
                and names
                and all(isinstance(n, str) for n in names)
            ):
                return list(names)
    return None


class PluginTask(BaseTask):
    """A TorchGeo task whose checkpoints know which class wrote them.

    Subclasses define ``configure_models`` etc. as for any TorchGeo task. The
    conventions every task follows:

    * **monitored metric**: ``monitor`` names a metric exactly as logged,
      ``val_<metric>`` (mAP at IoU 0.5 is ``val_map_50`` for every detector,
      as torchmetrics names it; ``mode`` says whether higher is better);
    * **hyperparameter names**: ``max_detections`` (boxes kept per image),
      ``final_lr_ratio`` (learning-rate factor at the end of the schedule),
      ``val_score_threshold`` / ``score_threshold`` (evaluation / prediction),
      ``model`` (a :func:`torchgeo_ext.models.api.get_model` name);
    * **class names**: the ``class_names`` hyperparameter, else the data
      module's (recorded at fit, see :func:`datamodule_class_names`), else
      ``class_<i>``; never guessed from the number of classes
      (:attr:`class_names`);
    * **predictions** carry the batch's :attr:`passthrough_keys`
      (:meth:`passthrough`);
    * **logging** goes through Lightning (``self.log`` or
      ``lightning.pytorch.utilities.rank_zero_info``), never ``print``.

    At ``fit`` the data module's normalisation is recorded in the
    ``normalisation`` hyperparameter (see :func:`datamodule_normalisation`);
    :meth:`normalise` applies it to raw inputs.
    """

    #: Batch keys copied unchanged into the output of ``predict_step``.
    passthrough_keys: tuple[str, ...] = (
        'transform',
        'crs',
        'bounds',
        'id',
        'path',
        'sequence',
        'frame',
    )

    @property
    def class_names(self) -> list[str]:
        """Class names, indexed by label (see the class docstring)."""
        names = self.hparams.get('class_names')
        if names is not None:
            return list(names)
        return [f'class_{i}' for i in range(int(self.hparams.get('num_classes', 0)))]

    @staticmethod
    def metric_name(name: str) -> str:
        """A class name usable in a metric key (``Deep convection`` -> ``Deep_convection``).

        Args:
            name: The class name.

        Returns:
            The name with each non-alphanumeric run replaced by ``_`` (``class``
            when nothing is left).
        """
        return re.sub(r'[^0-9A-Za-z]+', '_', name).strip('_') or 'class'

    def passthrough(
        self, batch: Mapping[str, Any], out: dict[str, Any]
    ) -> dict[str, Any]:
        """Copy the batch's :attr:`passthrough_keys` into a prediction.

        Args:
            batch: The batch.
            out: The prediction (updated in place).

        Returns:
            ``out``.
        """
        for key in self.passthrough_keys:
            if key in batch:
                out[key] = batch[key]
        return out

    def record_class_names(self, names: Sequence[str] | None) -> None:
        """Record the data's class names when the hyperparameters give none.

        Args:
            names: The names (ignored when None, when the task takes no
                ``class_names`` argument, or when their number is not the
                task's ``num_classes``).
        """
        # Only tasks that take class_names (recorded, None, in their hparams).
        if names is None or 'class_names' not in self.hparams:
            return
        if self.hparams['class_names'] is not None:
            return
        num_classes = self.hparams.get('num_classes')
        if num_classes is not None and len(names) != int(num_classes):
            return
        self.hparams['class_names'] = list(names)

    @property
    def normalisation(self) -> NormalisationRecord | None:
        """The recorded input normalisation (None: none recorded)."""
        record = self.hparams.get(NORMALISATION_KEY)
        return None if record is None else normalisation_record(record)

    def record_normalisation(self, normalisation: Any) -> None:
        """Record the normalisation the inputs of this task get.

        Called at fit time with the data module's; call it yourself when
        training from plain data loaders that normalise in another way.

        Args:
            normalisation: Anything :func:`normalisation_record` accepts.
        """
        record = normalisation_record(normalisation)
        old = self.hparams.get(NORMALISATION_KEY)
        if old is not None and record is not None and old != record:
            warnings.warn(
                f'{type(self).__name__}: the data module normalises with {record}, '
                f'the loaded weights were trained with {old}; recording the new one',
                UserWarning,
                stacklevel=2,
            )
        self.hparams[NORMALISATION_KEY] = record

    def normalise(self, x: Tensor) -> Tensor:
        """Apply the recorded normalisation to raw images.

        Args:
            x: Raw images (..., C, H, W), as the dataset or raster holds them.

        Returns:
            ``(x - offset) / scale`` per band in float32; ``x`` unchanged when
            no normalisation is recorded.

        Raises:
            InvalidInputError: If the record has per-band values for another
                number of bands.
        """
        record = self.normalisation
        if record is None:
            return x
        bands = int(x.shape[-3])
        values = []
        for name in ('offset', 'scale'):
            v = torch.tensor(record[name], dtype=torch.float32, device=x.device)
            if len(v) not in (1, bands):
                raise InvalidInputError(
                    None,
                    f'the input has {bands} bands but the recorded normalisation has '
                    f'{len(v)} {name} values',
                )
            values.append(v.reshape(-1, 1, 1))
        return (x.to(torch.float32) - values[0]) / values[1]

    def setup(self, stage: str) -> None:
        """Record the data module's normalisation and class names when fitting.

        Args:
            stage: ``'fit'``, ``'validate'``, ``'test'`` or ``'predict'``.
        """
        super().setup(stage)
        trainer = self._trainer
        if stage != 'fit' or trainer is None:
            return
        datamodule = getattr(trainer, 'datamodule', None)
        self.adopt_datamodule_shape(datamodule)
        record = datamodule_normalisation(datamodule)
        if record is not None:
            self.record_normalisation(record)
        self.record_class_names(datamodule_class_names(datamodule))

    def adopt_datamodule_shape(self, datamodule: Any) -> None:
        """Rebuild the model for the data module's classes and bands, if they differ.

        Only data modules that state their ``num_classes`` (and
        ``in_channels``) take part: those of your own imagery
        (:class:`~torchgeo_ext.datamodules.GeoDetectionDataModule`, whose
        class count comes from the label file; segmentation counts the
        background too, ``segmentation_classes``). A config then need not
        repeat what the labels say. Nothing is rebuilt when initial weights
        were given (``weights``) or a run is resumed: a mismatch is an error
        there.

        Args:
            datamodule: The data module being fitted on (or None).

        Raises:
            ValueError: If a mismatch cannot be fixed by rebuilding.
        """
        if datamodule is None or not hasattr(datamodule, 'num_classes'):
            return
        names = getattr(datamodule, 'segmentation_classes', None)
        wanted = {
            'num_classes': len(names) if names is not None else datamodule.num_classes,
            'in_channels': getattr(datamodule, 'in_channels', None),
        }
        changes = {
            key: value
            for key, value in wanted.items()
            if self.hparams.get(key) is not None
            and value is not None
            and self.hparams[key] != value
        }
        if not changes:
            return
        trainer = self._trainer
        resuming = trainer is not None and getattr(trainer, 'ckpt_path', None)
        if self.hparams.get('weights') or resuming:
            raise ValueError(
                f'{type(self).__name__}: the data module has '
                + ', '.join(f'{k}={v}' for k, v in changes.items())
                + ' but the model was built with '
                + ', '.join(f'{k}={self.hparams[k]}' for k in changes)
                + ' and loads trained weights; set them in the config'
            )
        warnings.warn(
            f"{type(self).__name__}: rebuilding the model for the data module's "
            + ', '.join(f'{k}={v} (was {self.hparams[k]})' for k, v in changes.items()),
            UserWarning,
            stacklevel=2,
        )
        self.hparams.update(changes)
        # the same order as BaseTask.__init__; optimisers are made after setup
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store this task's class path and normalisation in the checkpoint.

        Args:
            checkpoint: The checkpoint dictionary Lightning is about to save.
        """
        cls = type(self)
        checkpoint[TASK_CLASS_KEY] = f'{cls.__module__}.{cls.__qualname__}'
        record = self.normalisation
        checkpoint[NORMALISATION_CHECKPOINT_KEY] = record
        hparams = checkpoint.get('hyper_parameters')
        parameters = inspect.signature(cls.__init__).parameters
        if isinstance(hparams, dict) and NORMALISATION_KEY not in parameters:
            # Lightning would pass it to an __init__ taking **kwargs on loading,
            # and LightningCLI (--ckpt_path) to any __init__; the copy under
            # NORMALISATION_CHECKPOINT_KEY restores it instead.
            hparams.pop(NORMALISATION_KEY, None)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the recorded normalisation.

        Args:
            checkpoint: The loaded checkpoint dictionary.
        """
        record = checkpoint.get(NORMALISATION_CHECKPOINT_KEY)
        if record is None:
            record = checkpoint.get('hyper_parameters', {}).get(NORMALISATION_KEY)
        if record is not None:
            self.hparams[NORMALISATION_KEY] = normalisation_record(record)


def task_class_path(path: str | os.PathLike[str]) -> str:
    """Read the task class path recorded in a checkpoint.

    Args:
        path: A checkpoint written by a :class:`PluginTask`.

    Returns:
        The dotted import path of the task class.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is not a checkpoint of this library.
    """
    if not os.path.isfile(path):
        raise MissingInputError(path, 'checkpoint not found')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files
        raise InvalidInputError(path, f'not a readable checkpoint ({error})') from error
    if not isinstance(checkpoint, dict) or TASK_CLASS_KEY not in checkpoint:
        raise InvalidInputError(
            path, 'not a torchgeo-ext task checkpoint (no task class recorded)'
        )
    return str(checkpoint[TASK_CLASS_KEY])


def load_task(path: str | os.PathLike[str], map_location: str = 'cpu') -> BaseTask:
    """Rebuild the task that wrote a checkpoint, in eval mode.

    Args:
        path: A checkpoint written by a :class:`PluginTask`.
        map_location: Device to load the weights onto.

    Returns:
        The task with its weights loaded.

    Raises:
        InvalidInputError: If the checkpoint names no importable task class.
    """
    class_path = task_class_path(path)
    module_name, _, class_name = class_path.rpartition('.')
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise InvalidInputError(path, f'task class {class_path} not found') from error
    task: BaseTask = cls.load_from_checkpoint(path, map_location=map_location)
    task.eval()
    return task
