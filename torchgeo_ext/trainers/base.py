"""The base class of this library's Lightning tasks, and checkpoint loading by class."""

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
from torchmetrics import MetricCollection

from ..errors import InvalidInputError, MissingInputError
from ..models.api import get_model_builder

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

    The one way a task is written (docs/architecture.md shows a minimal one):

    * **model**: the ``model`` argument names a builder of the registry
      (:func:`torchgeo_ext.models.api.get_model`); :attr:`models` lists those
      the task trains, and :meth:`check_hyperparameters` refuses others
      before anything is built;
    * **metrics**: :meth:`build_metrics` returns one unprefixed
      :class:`~torchmetrics.MetricCollection`; :meth:`configure_metrics`
      clones it as ``train_metrics``, ``val_metrics`` and ``test_metrics``
      (prefixes ``train_``, ``val_``, ``test_``, TorchGeo's pattern). Steps
      update ``self.stage_metrics(stage)``; at each epoch's end the updated
      collection is computed, logged (:meth:`loggable_metrics`) and reset;
    * **loss**: ``compute_loss`` returns the loss under ``'loss'`` and its
      terms; :meth:`log_losses` logs them as ``<stage>_loss`` and
      ``<stage>_<term>``; a model's own training-only losses come from its
      ``forward_with_losses(x) -> (output, {name: weighted loss})`` and are
      added as ``loss_<name>`` terms;
    * **schedule length**: from the trainer
      (:func:`~torchgeo_ext.trainers.optimization.schedule_steps`,
      :func:`~torchgeo_ext.trainers.optimization.schedule_epochs`), never a
      task argument;
    * **monitored metric**: ``monitor`` names a metric exactly as logged,
      ``val_<metric>`` (mAP at IoU 0.5 is ``val_map_50`` for every detector,
      as torchmetrics names it; ``mode`` says whether higher is better);
    * **hyperparameter names**: ``max_detections`` (boxes kept per image),
      ``final_lr_ratio`` (learning-rate factor at the end of the schedule),
      ``val_score_threshold`` / ``score_threshold`` (evaluation / prediction),
      ``model_kwargs`` (further arguments of the model builder);
    * **class names**: the ``class_names`` hyperparameter (its length is
      checked against ``num_classes`` once, here), else the data module's
      (recorded at fit, see :func:`datamodule_class_names`), else
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

    #: Registry names of the models this task trains (empty: it takes no ``model``).
    models: tuple[str, ...] = ()
    #: Per-class metric results and the name their values are logged under
    #: (``{'map_per_class': 'ap'}``: ``val_ap_<class>``); other vectors of
    #: ``num_classes`` values keep their own name (``val_IoU_<class>``).
    per_class_names: Mapping[str, str] = {}

    train_metrics: MetricCollection
    val_metrics: MetricCollection
    test_metrics: MetricCollection

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

    def save_hyperparameters(
        self,
        *args: Any,
        ignore: Sequence[str] | str | None = None,
        frame: Any = None,
        logger: bool = True,
    ) -> None:
        """Save the ``__init__`` arguments, then check them (before any model is built).

        Args:
            *args: As :meth:`lightning.pytorch.LightningModule.save_hyperparameters`.
            ignore: Arguments not to save.
            frame: The ``__init__`` frame (default: the caller's).
            logger: Log the hyperparameters.
        """
        if frame is None:
            current = inspect.currentframe()
            frame = current.f_back if current is not None else None
        super().save_hyperparameters(*args, ignore=ignore, frame=frame, logger=logger)
        self.check_hyperparameters()

    def check_hyperparameters(self) -> None:
        """The checks every task shares: the model name and the class names.

        Raises:
            ValueError: If ``model`` is not in the registry or not one of
                :attr:`models`, or ``class_names`` does not have
                ``num_classes`` names.
        """
        hp = self.hparams
        if self.models:
            name = hp.get('model')
            get_model_builder(str(name))  # unknown to the registry: lists them all
            if name not in self.models:
                raise ValueError(
                    f'unknown model {name!r} for {type(self).__name__}; '
                    f'it trains {", ".join(self.models)}'
                )
        names = hp.get('class_names')
        num_classes = hp.get('num_classes')
        if names is not None and num_classes is not None and len(names) != num_classes:
            raise ValueError(
                f'class_names has {len(names)} names for {num_classes} classes'
            )

    # -- metrics ----------------------------------------------------------------

    def build_metrics(self) -> MetricCollection | None:
        """The task's metrics, unprefixed (None: the task has none).

        Returns:
            One collection; :meth:`configure_metrics` clones it per stage.
        """
        return None

    def configure_metrics(self) -> None:
        """Clone :meth:`build_metrics` as ``train_``, ``val_`` and ``test_metrics``."""
        metrics = self.build_metrics()
        if metrics is None:
            return
        self.train_metrics = metrics.clone(prefix='train_')
        self.val_metrics = metrics.clone(prefix='val_')
        self.test_metrics = metrics.clone(prefix='test_')

    def stage_metrics(self, stage: str) -> MetricCollection:
        """The metric collection of a stage.

        Args:
            stage: ``'train'``, ``'val'`` or ``'test'``.

        Returns:
            The collection.
        """
        return {
            'train': self.train_metrics,
            'val': self.val_metrics,
            'test': self.test_metrics,
        }[stage]

    def loggable_metrics(self, values: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Computed metric values as the scalars logged.

        Scalars are logged as they are; a vector of ``num_classes`` values (or
        a result in :attr:`per_class_names`) as one value per class named
        ``<key>_<class name>`` (NaN values, classes without data, are left
        out); a key ending in ``classes`` (mAP's list of class ids) and other
        vectors (curves) are not logged.

        Args:
            values: The collection's computed values (keys prefixed).

        Returns:
            Metric name to scalar.
        """
        out: dict[str, Tensor] = {}
        num_classes = self.hparams.get('num_classes')
        for key, value in values.items():
            if key.endswith('classes'):
                continue
            if value.ndim == 0 and not any(
                key.endswith(k) for k in self.per_class_names
            ):
                out[key] = value
                continue
            renamed = key
            for suffix, name in self.per_class_names.items():
                if key.endswith(suffix):
                    renamed = key[: -len(suffix)] + name
            if value.ndim != 1 or num_classes is None or len(value) != num_classes:
                continue
            for name, item in zip(self.class_names, value, strict=True):
                if not torch.isnan(item):
                    out[f'{renamed}_{self.metric_name(name)}'] = item
        return out

    def log_stage_metrics(self, stage: str) -> None:
        """Compute, log and reset a stage's metrics (if they were updated).

        Args:
            stage: ``'train'``, ``'val'`` or ``'test'``.
        """
        if not hasattr(self, f'{stage}_metrics'):
            return
        metrics = self.stage_metrics(stage)
        if not any(metric.update_called for metric in metrics.values()):
            return
        self.log_dict(self.loggable_metrics(metrics.compute()))
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        """Log the training metrics."""
        self.log_stage_metrics('train')

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics."""
        self.log_stage_metrics('val')

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self.log_stage_metrics('test')

    def log_losses(
        self, terms: Mapping[str, Tensor], stage: str, batch_size: int
    ) -> None:
        """Log the result of ``compute_loss``: ``<stage>_loss`` and ``<stage>_<term>``.

        Args:
            terms: The loss under ``'loss'`` and its terms.
            stage: ``'train'``, ``'val'`` or ``'test'``.
            batch_size: Samples in the batch.
        """
        for name, value in terms.items():
            key = f'{stage}_loss' if name == 'loss' else f'{stage}_{name}'
            self.log(
                key,
                value.detach(),
                batch_size=batch_size,
                prog_bar=stage == 'train' and name == 'loss',
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

    A :class:`PluginTask` records its own class path in each checkpoint, so the
    command-line tools (``detect``, ``segment``, ``anomaly``) rebuild the right
    task, with its recorded normalisation, from the checkpoint alone.

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


def load_task_model(
    checkpoint: str | os.PathLike[str],
    kind: type | tuple[type, ...],
    problem: str,
    attribute: str = 'model',
) -> Any:
    """The model a checkpoint's task holds, checked to be of the expected kind.

    Args:
        checkpoint: A checkpoint written by a :class:`PluginTask`.
        kind: The class (or classes) the model must be an instance of.
        problem: What the error says when it is not.
        attribute: Dotted attribute path of the model on the task
            (``'ema_teacher.module'`` for an averaged copy).

    Returns:
        The model, in eval mode (as :func:`load_task` leaves the task).

    Raises:
        InvalidInputError: If the task holds no such model.
    """
    model: Any = load_task(checkpoint)
    for name in attribute.split('.'):
        model = getattr(model, name, None)
    if not isinstance(model, kind):
        raise InvalidInputError(checkpoint, problem)
    return model
