"""``torchgeo-ext fit|validate|test|predict``: TorchGeo's LightningCLI with this library."""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The Lightning subcommands forwarded to LightningCLI.
SUBCOMMANDS = ('fit', 'validate', 'test', 'predict')
#: ``--ckpt_path`` values Lightning resolves itself (no file to check).
_SPECIAL_CKPT = ('best', 'last', 'hpc', 'registry')
#: The settings ``torchgeo.main.main`` applies (cog-best-practices).
_RASTERIO_ENV = {
    'GDAL_DISABLE_READDIR_ON_OPEN': 'EMPTY_DIR',
    'AWS_NO_SIGN_REQUEST': 'YES',
    'GDAL_MAX_RAW_BLOCK_CACHE_SIZE': '200000000',
    'GDAL_SWATH_SIZE': '200000000',
    'VSI_CURL_CACHE_SIZE': '200000000',
}


def add_parser(subparsers: Any) -> None:
    """Register the Lightning subcommands (for ``--help``; parsing is LightningCLI's).

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    for name in SUBCOMMANDS:
        parser = subparsers.add_parser(
            name,
            help=f'{name} a model from a LightningCLI config (see `torchgeo-ext {name} --help`)',
            add_help=False,
        )
        parser.add_argument('args', nargs=argparse.REMAINDER)
        parser.set_defaults(
            run=lambda args, name=name: run_lightning([name, *args.args])
        )


def option_values(argv: Sequence[str], name: str) -> list[str]:
    """Every value given to a long option, as ``--name V`` or ``--name=V``.

    Args:
        argv: Command-line arguments.
        name: The option, e.g. ``'--ckpt_path'``.

    Returns:
        The values, in order.
    """
    values = []
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(name + '='):
            values.append(arg[len(name) + 1 :])
    return values


def _config_files(argv: Sequence[str]) -> list[str]:
    return option_values(argv, '--config') + option_values(argv, '-c')


def _from_configs(argv: Sequence[str]) -> dict[str, Any]:
    """The top-level ``ckpt_path`` and ``model`` class path set by the configs and argv."""
    import yaml

    found: dict[str, Any] = {}
    for config in _config_files(argv):
        try:
            with open(config) as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue  # LightningCLI reports unreadable configs itself
        if not isinstance(data, dict):
            continue
        if data.get('ckpt_path') is not None:
            found['ckpt_path'] = str(data['ckpt_path'])
        model = data.get('model')
        if isinstance(model, dict) and model.get('class_path'):
            found['model'] = str(model['class_path'])
        elif isinstance(model, str):
            found['model'] = model
    for name, key in (('--model', 'model'), ('--model.class_path', 'model')):
        values = option_values(argv, name)
        if values and not values[-1].lstrip().startswith(('{', '/')):
            found[key] = values[-1]
    ckpts = option_values(argv, '--ckpt_path')
    if ckpts:
        found['ckpt_path'] = ckpts[-1]
    return found


def check_checkpoint(path: str, model: str | None = None) -> None:
    """Check a checkpoint given to a Lightning subcommand before anything starts.

    Args:
        path: The ``--ckpt_path`` value.
        model: The class path (or short name) of the config's model, if known.

    Raises:
        MissingInputError: If the file does not exist.
        InvalidInputError: If it is a folder, not a readable checkpoint
            (truncated, corrupt, another format), or was written by another
            model class than *model*.
    """
    import torch

    from ..errors import InvalidInputError, MissingInputError
    from ..trainers.base import TASK_CLASS_KEY

    if os.path.isdir(path):
        raise InvalidInputError(path, '--ckpt_path is a folder, not a checkpoint file')
    if not os.path.isfile(path):
        raise MissingInputError(path, '--ckpt_path: checkpoint not found')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:  # torch raises many types for corrupt files
        first = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise InvalidInputError(
            path,
            'not a readable checkpoint (truncated, corrupt or not a PyTorch file'
            + (f': {first}' if first else '')
            + ')',
        ) from error
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise InvalidInputError(
            path, 'not a Lightning checkpoint (it holds no state_dict)'
        )
    recorded = checkpoint.get(TASK_CLASS_KEY)
    if recorded and model:
        short = str(recorded).rpartition('.')[2]
        wanted = model.rpartition('.')[2]
        if short != wanted:
            raise InvalidInputError(
                path,
                f'a checkpoint of {short} ({recorded}), but the config runs {wanted}; '
                f'give a {wanted} checkpoint',
            )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def _input_error_cause(error: BaseException) -> BaseException | None:
    """The first :class:`~torchgeo_ext.errors.InputError` that caused *error*, if any."""
    from ..errors import InputError

    seen: set[int] = set()
    cause: BaseException | None = error.__cause__ or error.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, InputError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def complete_checkpoint(path: Path) -> bool:
    """Whether a ``.ckpt`` file is whole (a complete zip archive, as torch.save writes).

    A truncated or empty file has no zip directory at its end; this does not
    read the tensors, so it stays fast for large checkpoints.

    Args:
        path: The file.

    Returns:
        True if it is a complete archive.
    """
    import zipfile

    try:
        return path.is_file() and path.stat().st_size > 0 and zipfile.is_zipfile(path)
    except OSError:
        return False


def _remove_failed_log_dir(state: dict[str, Any]) -> None:
    """Remove the logger folder a failed run created, if it holds no whole checkpoint.

    Truncated or empty ``.ckpt`` files in it (a save cut short, by another
    checkpoint writer than this library's atomic one) are removed: they would
    pass for checkpoints.
    """
    log_dir: Path | None = state.get('log_dir')
    if log_dir is None or state.get('existed', True) or not log_dir.is_dir():
        return
    whole = False
    for ckpt in log_dir.rglob('*.ckpt'):
        if complete_checkpoint(ckpt):
            whole = True
        else:
            ckpt.unlink(missing_ok=True)
    if whole:
        return  # something worth keeping was saved
    shutil.rmtree(log_dir, ignore_errors=True)
    for parent in state.get('new_parents', []):
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break


def run_lightning(argv: list[str]) -> int:
    """Run TorchGeo's LightningCLI with this library's tasks and data modules loaded.

    Behaves like ``torchgeo fit --config ...``; importing
    :mod:`torchgeo_ext.trainers` and :mod:`torchgeo_ext.datamodules` first makes
    their classes known to jsonargparse, so configs may name them by short name
    (``class_path: SuperYOLOTask``) as well as by full path. Problems that are
    the user's become one line instead of a traceback: a ``--ckpt_path`` (or
    ``ckpt_path:`` in a config) that is missing, not a checkpoint, truncated, or
    written by another model than the config's is refused before anything
    starts; so are a dataset root that does not exist and weights that do not
    fit the model. A failed run leaves no ``lightning_logs/version_N`` without a
    whole checkpoint (truncated ``.ckpt`` files are removed), and checkpoints
    are written atomically
    (:class:`~torchgeo_ext.export.checkpoint_io.AtomicCheckpointIO`).

    Args:
        argv: The subcommand and its arguments, e.g. ``['fit', '--config', 'x.yaml']``.

    Returns:
        0 on success (LightningCLI exits by itself on argument errors).

    Raises:
        MissingInputError: If the checkpoint or the dataset root does not exist.
        InvalidInputError: If the checkpoint is unreadable, of another model,
            or its weights do not fit the model.
    """
    import torchgeo
    from torchgeo.datamodules import BaseDataModule
    from torchgeo.tasks import BaseTask

    _load_plugin_classes()
    found = _from_configs(argv)
    ckpt = found.get('ckpt_path')
    if ckpt is not None and ckpt not in _SPECIAL_CKPT:
        check_checkpoint(ckpt, found.get('model'))
    state: dict[str, Any] = {}
    os.environ.update(_RASTERIO_ENV)
    # The arguments are the command line's own: Lightning's warning about
    # passing both does not apply.
    warnings.filterwarnings(
        'ignore',
        message="LightningCLI's args parameter is intended",
        category=UserWarning,
    )
    try:
        _cli_remembering_log_dir(state)(
            model_class=BaseTask,
            datamodule_class=BaseDataModule,
            seed_everything_default=0,
            parser_kwargs={'version': torchgeo.__version__},
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={'overwrite': True},
            args=argv,
        )
    except BaseException as error:
        _remove_failed_log_dir(state)
        reported = _user_error(error, ckpt)
        if reported is not None:
            raise reported from error
        raise
    return 0


def _load_plugin_classes() -> None:
    """Import TorchGeo's and this library's tasks and data modules for jsonargparse."""
    import torchgeo.main  # noqa: F401  (registers TorchGeo's classes, as `torchgeo` does)

    import torchgeo_ext.datamodules
    import torchgeo_ext.trainers

    # The packages export lazily: resolve every name so that jsonargparse sees
    # each subclass (configs may name them by short class name).
    for package in (torchgeo_ext.datamodules, torchgeo_ext.trainers):
        for name in package.__all__:
            getattr(package, name)


def _cli_remembering_log_dir(state: dict[str, Any]) -> type[Any]:
    """TorchGeo's LightningCLI, with atomic checkpoints, noting the log folder in ``state``.

    ``state`` receives ``log_dir``, whether it ``existed`` and the ``new_parents``
    a run creates, for :func:`_remove_failed_log_dir`.
    """
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningCLI

    from ..export.checkpoint_io import use_atomic_checkpoints

    class CLI(LightningCLI):
        """TorchGeo's LightningCLI, remembering where the trainer logs."""

        def instantiate_trainer(self, **kwargs: Any) -> Trainer:
            trainer = super().instantiate_trainer(**kwargs)
            # Checkpoints written atomically (a full disk leaves no short file
            # under a checkpoint name), unless the config names its own writer.
            use_atomic_checkpoints(trainer)
            if trainer.logger is not None:
                log_dir = trainer.log_dir
                if log_dir is not None and Path(log_dir).name.startswith('version_'):
                    path = Path(log_dir).absolute()
                    state['log_dir'] = path
                    state['existed'] = path.exists()
                    state['new_parents'] = [p for p in path.parents if not p.exists()][
                        :2
                    ]
            return trainer

    return CLI


def _user_error(error: BaseException, ckpt: str | None) -> BaseException | None:
    """The one-line input error a failed run is the user's, or None if it is not.

    Args:
        error: What LightningCLI raised.
        ckpt: The checkpoint of the run, if any.

    Returns:
        The error to raise instead, or None to raise ``error`` as it is.
    """
    from torchgeo.datasets import DatasetNotFoundError

    from ..errors import InvalidInputError, MissingInputError

    cause = _input_error_cause(error)
    if cause is not None:
        # jsonargparse wraps errors of the classes it instantiates
        # (e.g. a prediction writer's output folder): report the cause.
        return cause
    if isinstance(error, DatasetNotFoundError):
        root = getattr(error, 'root', None)
        return MissingInputError(root, _first_line(error))
    if (
        isinstance(error, RuntimeError)
        and 'loading state_dict' in str(error)
        and ckpt is not None
    ):
        return InvalidInputError(
            ckpt,
            'its weights do not fit the model of the config '
            f'({_first_line(error)}); was it trained with other model options?',
        )
    return None
