"""Atomic checkpoints for Lightning: a temporary file, fsync, then a rename."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH

from .atomic import disk_full, fsync_folder, register_temporary, unregister_temporary
from .outputs import non_local

__all__ = ['AtomicCheckpointIO', 'save_checkpoint_atomically', 'use_atomic_checkpoints']


def _save_error(error: Exception, path: Path, full: bool) -> OSError | None:
    """The one-line error for a failed save: the folder, the checkpoint and the cause."""
    cause: OSError | None = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            cause = current
            break
        current = current.__cause__ or current.__context__
    if full:
        number, reason = errno.ENOSPC, os.strerror(errno.ENOSPC)
    elif cause is not None:
        number = cause.errno or errno.EIO
        reason = cause.strerror or os.strerror(number)
    else:
        return None  # not the file system (e.g. something that cannot be pickled)
    return OSError(
        number,
        f'cannot save the checkpoint {path.name}: {reason}; no file was written '
        'under that name',
        os.fspath(path.parent),
    )


def save_checkpoint_atomically(checkpoint: dict[str, Any], path: Path) -> None:
    """Write a checkpoint to a temporary sibling, fsync it, rename it onto *path*.

    Args:
        checkpoint: What :func:`torch.save` writes.
        path: The checkpoint file (a file it replaces stays until the rename).

    Raises:
        OSError: Naming the checkpoint folder, the checkpoint and the cause
            (e.g. no space left on device) when the file system fails; nothing
            is left under *path* or beside it.
    """
    import torch

    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            err.errno,
            f'cannot create the checkpoint folder ({err.strerror or err})',
            os.fspath(folder),
        ) from err
    tmp = register_temporary(
        folder / f'.{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}'
    )
    try:
        with open(tmp, 'xb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_folder(folder)
    except BaseException as error:
        # Judged before the temporary file goes (it may hold the space).
        full = isinstance(error, Exception) and disk_full(error, folder)
        tmp.unlink(missing_ok=True)
        unregister_temporary(tmp)
        reported = (
            _save_error(error, path, full) if isinstance(error, Exception) else None
        )
        if reported is not None:
            raise reported from error
        raise
    unregister_temporary(tmp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's :class:`~lightning.fabric.plugins.TorchCheckpointIO`, saving atomically.

    Local checkpoints are written by :func:`save_checkpoint_atomically`;
    remote ones (``s3://...``) are left to Lightning's fsspec writer. Loading
    and removing are Lightning's. ``torchgeo-ext fit`` uses it by default; with
    ``torchgeo fit`` (or a bare LightningCLI), name it in the config::

        trainer:
          plugins:
            - class_path: torchgeo_ext.export.checkpoint_io.AtomicCheckpointIO
    """

    def save_checkpoint(
        self,
        checkpoint: dict[str, Any],
        path: _PATH,
        storage_options: Any | None = None,
    ) -> None:
        """Save a checkpoint: local files atomically, remote ones through fsspec.

        Args:
            checkpoint: Model and trainer state.
            path: Where.
            storage_options: Not supported (as in TorchCheckpointIO).

        Raises:
            TypeError: If *storage_options* is given.
        """
        if storage_options is not None or non_local(os.fspath(path)) is not None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_checkpoint_atomically(checkpoint, Path(os.fspath(path)))


def use_atomic_checkpoints(trainer: Any) -> bool:
    """Make *trainer* save checkpoints atomically unless it has its own writer.

    Args:
        trainer: A Lightning trainer.

    Returns:
        Whether its checkpoint writer was replaced (only Lightning's default
        :class:`~lightning.fabric.plugins.TorchCheckpointIO` is).
    """
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is not TorchCheckpointIO:
        return False
    strategy.checkpoint_io = AtomicCheckpointIO()
    return True
