"""Atomic file output: write to a temporary sibling, rename on success, roll back on failure."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError, InvalidInputError

__all__ = [
    'OutputTransaction',
    'atomic_output',
    'check_writable',
    'check_writable_dir',
    'disk_full',
    'fsync_file',
    'fsync_folder',
    'make_output_dir',
    'output_transaction',
    'register_temporary',
    'registered_temporaries',
    'remove_registered_temporaries',
    'remove_temporaries',
    'temporary_directory',
    'unregister_temporary',
    'write_error',
]

#: Words of GDAL, SQLite, libtiff and Arrow messages that mean the disk is full.
_DISK_FULL_WORDS = ('no space left', 'disk is full', 'disk full', 'quota exceeded')
#: Below this much free space, a failed write is taken to be a full disk (GDAL and
#: libtiff report ENOSPC on stderr and raise an unrelated "seek error").
_LOW_SPACE_BYTES = 1 << 20

#: Temporary files and folders that exist right now (insertion ordered).
_TEMPORARIES: dict[Path, None] = {}


def register_temporary(path: str | os.PathLike[str]) -> Path:
    """Record a temporary file or folder (and its side files) for cleanup.

    Args:
        path: The temporary path.

    Returns:
        The path as an absolute :class:`~pathlib.Path`.
    """
    tmp = Path(path).absolute()
    _TEMPORARIES[tmp] = None
    return tmp


def unregister_temporary(path: str | os.PathLike[str]) -> None:
    """Forget a temporary path (after it was renamed into place or removed).

    Args:
        path: A path given to :func:`register_temporary`.
    """
    _TEMPORARIES.pop(Path(path).absolute(), None)


def registered_temporaries() -> list[Path]:
    """The temporary paths registered now.

    Returns:
        The paths, oldest first.
    """
    return list(_TEMPORARIES)


def remove_registered_temporaries() -> None:
    """Remove every registered temporary path and its side files, then forget them."""
    for tmp in reversed(list(_TEMPORARIES)):
        remove_temporaries(tmp)
        unregister_temporary(tmp)


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest existing ancestor."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_folder(folder: Path, out: Path) -> None:
    """Check that a file can really be created in *folder*."""
    # os.access is not enough (root, ACLs, read-only mounts): really create a file.
    probe = folder / f'.{out.name}.probe-{secrets.token_hex(4)}'
    # Registered first: a signal arriving between creating and removing the probe
    # (the CLI turns it into an exception) must not leave it behind.
    register_temporary(probe)
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
    except OSError as err:
        raise InvalidInputError(
            out, f'cannot write the output: {err.strerror or err} in {folder}'
        ) from err
    finally:
        probe.unlink(missing_ok=True)
        unregister_temporary(probe)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check up front that *path* can be written, without creating anything.

    Missing parent folders are fine as long as the closest existing ancestor
    is a writable folder (:func:`atomic_output` creates them when it writes).

    Args:
        path: The output file.

    Returns:
        The output path as an absolute :class:`~pathlib.Path`.

    Raises:
        InvalidInputError: If the path is a URL or GDAL virtual path, a
            folder, an ancestor is a file, or
            nothing can be written where the file would go, or the file
            exists and is read-only.
    """
    from .outputs import check_local_output

    check_local_output(path)
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise InvalidInputError(
            out, 'cannot write the output: this is an existing folder, not a file'
        )
    folder = _nearest_existing(out.parent)
    if not folder.is_dir():
        raise InvalidInputError(
            out, f'cannot write the output: {folder} is a file, not a folder'
        )
    _probe_folder(folder, out)
    if out.exists() and not os.access(out, os.W_OK) and os.name != 'nt':
        # Renaming onto a read-only file works on POSIX, but the user asked for
        # it to be read-only: respect that.
        raise InvalidInputError(out, 'cannot write the output: the file is read-only')
    return out


def check_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Check up front that files can be written into the folder *path*.

    Args:
        path: The output folder (it may not exist yet).

    Returns:
        The folder as an absolute :class:`~pathlib.Path`.

    Raises:
        InvalidInputError: If *path* is a URL or GDAL virtual path, *path* or
            an ancestor is an existing file, or nothing can be written there.
    """
    from .outputs import check_local_output

    check_local_output(path, 'the output folder')
    out = Path(path).expanduser().absolute()
    folder = _nearest_existing(out)
    if not folder.is_dir():
        what = 'this is an existing file' if folder == out else f'{folder} is a file'
        raise InvalidInputError(out, f'cannot write the output folder: {what}')
    _probe_folder(folder, out)
    return out


def remove_temporaries(tmp: Path) -> None:
    """Remove a temporary file or folder and its side files (``.aux.xml``, ...).

    Args:
        tmp: The temporary path handed out by :func:`atomic_output`.
    """
    for leftover in tmp.parent.glob(f'{tmp.name}*'):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink()


class OutputTransaction:
    """The outputs one command has renamed into place so far, for rollback."""

    def __init__(self) -> None:
        """Initialise a new, empty OutputTransaction."""
        #: (output, backup of the file it replaced or None), in commit order.
        self.committed: list[tuple[Path, Path | None]] = []
        #: Folders created for outputs, outermost first.
        self.created_dirs: list[Path] = []

    def make_dirs(self, folder: Path) -> None:
        """Create *folder* and its missing parents, remembering which were created.

        Args:
            folder: The folder to create.
        """
        missing: list[Path] = []
        probe = folder
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        # Recorded before they exist: a signal between mkdir and the record must not
        # leave an untracked folder (rollback only removes folders left empty).
        self.created_dirs.extend(reversed(missing))
        folder.mkdir(parents=True, exist_ok=True)

    def replace(self, tmp: Path, out: Path) -> None:
        """Rename *tmp* onto *out*, keeping what *out* held until the end.

        Args:
            tmp: The finished temporary file.
            out: The final path.
        """
        backup: Path | None = None
        if out.is_file() and not out.is_symlink():
            backup = register_temporary(
                out.parent / f'.{out.name}.backup-{os.getpid()}-{secrets.token_hex(4)}'
            )
            try:
                # A hard link keeps *out* in place all along; copy where links fail.
                os.link(out, backup)
            except OSError:
                shutil.copy2(out, backup)
        # Recorded first, for the same reason; undoing a rename that did not happen
        # is harmless (no backup: *out* did not exist; else the backup is the same).
        self.committed.append((out, backup))
        os.replace(tmp, out)

    def commit(self) -> None:
        """Keep every output: drop the backups."""
        for _, backup in self.committed:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()
                unregister_temporary(backup)
        self.committed.clear()
        self.created_dirs.clear()

    def rollback(self) -> None:
        """Undo every output: remove it, restore what it replaced, remove new folders."""
        for out, backup in reversed(self.committed):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, out)
                    unregister_temporary(backup)
                else:
                    out.unlink()
        self.committed.clear()
        for folder in reversed(self.created_dirs):
            # Only folders left empty: never delete what someone else put there.
            with contextlib.suppress(OSError):
                folder.rmdir()
        self.created_dirs.clear()


#: The transaction of the running command, if any.
_TRANSACTION: OutputTransaction | None = None


@contextlib.contextmanager
def output_transaction() -> Iterator[OutputTransaction]:
    """Group the outputs written inside the block: all are kept, or none.

    On an exception (including :class:`~torchgeo_ext.errors.Interrupted` and
    :class:`KeyboardInterrupt`) every output already renamed into place by
    :func:`atomic_output` is removed (or the file it replaced restored),
    folders created for them are removed when empty, and every registered
    temporary file is removed. Nested blocks join the outer transaction.

    Yields:
        The transaction.
    """
    global _TRANSACTION
    if _TRANSACTION is not None:
        yield _TRANSACTION
        return
    transaction = _TRANSACTION = OutputTransaction()
    try:
        yield transaction
    except BaseException:
        transaction.rollback()
        remove_registered_temporaries()
        raise
    else:
        transaction.commit()
    finally:
        _TRANSACTION = None


def make_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create an output folder (and parents); removed again if the command fails.

    Args:
        path: The folder.

    Returns:
        The folder as a :class:`~pathlib.Path`.

    Raises:
        InvalidInputError: If it cannot be created.
    """
    folder = Path(path)
    try:
        if _TRANSACTION is not None:
            _TRANSACTION.make_dirs(folder.absolute())
        else:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            folder, f'cannot create the output folder ({err.strerror or err})'
        ) from err
    return folder


@contextlib.contextmanager
def temporary_directory(
    dir: str | os.PathLike[str] | None = None, prefix: str = '.torchgeo-ext-'
) -> Iterator[Path]:
    """A registered temporary folder, removed on exit (even on interruption).

    Args:
        dir: Where to create it (default: the system temporary folder).
        prefix: Its name prefix (hidden by default).

    Yields:
        The folder.
    """
    import tempfile

    if dir is not None:
        make_output_dir(dir)
    parent = Path(dir) if dir is not None else Path(tempfile.gettempdir())
    while True:
        # Registered before it exists (unlike tempfile.mkdtemp): a signal arriving
        # right after the folder is created must still find it in the registry.
        folder = register_temporary(parent / f'{prefix}{secrets.token_hex(6)}')
        try:
            folder.mkdir(mode=0o700)
            break
        except FileExistsError:
            unregister_temporary(folder)
        except OSError as err:
            unregister_temporary(folder)
            raise InvalidInputError(
                parent, f'cannot create a temporary folder ({err.strerror or err})'
            ) from err
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        unregister_temporary(folder)


def _causes(error: BaseException) -> Iterator[BaseException]:
    """*error* and the exceptions it was raised from, in order (no cycles)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_full(error: BaseException, folder: Path) -> bool:
    """Whether a write that failed with *error* in *folder* ran out of space.

    Call it before removing what the failed write left (it may hold the space).

    Args:
        error: What the writer raised.
        folder: Where it wrote.

    Returns:
        True for an ENOSPC/EDQUOT anywhere in the exception chain, a message
        saying the disk is full, or less than 1 MiB free in *folder*.
    """
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(word in str(cause).lower() for word in _DISK_FULL_WORDS):
            return True
    try:
        return shutil.disk_usage(folder).free < _LOW_SPACE_BYTES
    except OSError:
        return False


def write_error(
    error: BaseException, out: Path, tmp: Path | None = None, what: str = ''
) -> OSError | None:
    """The one error to report for a failed write of *out*, naming it and the cause.

    Writers fail with messages that name their temporary files (GDAL's
    ``.tmp-...stream.tif``), with pyogrio's ``FeatureError`` or rasterio's
    "See previous exception for details". When the disk is full (an ENOSPC
    anywhere in the exception chain, a message saying so, or less than 1 MiB
    left in the folder, checked before the temporary file is removed), or when
    an ``OSError`` names the temporary file, this is an :class:`OSError` naming
    *out* with the cause.

    Args:
        error: What the writer raised.
        out: The output being written.
        tmp: Its temporary path (an ``OSError`` naming it or its side files is
            reported under *out*).
        what: How to call *out* in the message (default: nothing more than its path).

    Returns:
        The error to raise instead (``from error``), or None to raise *error*
        itself (bad input, interruptions, errors unrelated to the disk).
    """
    if isinstance(error, InputError) or not isinstance(error, Exception):
        return None
    prefix = f'{what}: ' if what else ''
    if disk_full(error, out.parent):
        return OSError(
            errno.ENOSPC,
            f'{prefix}{os.strerror(errno.ENOSPC)} in {out.parent}; nothing was '
            'written under this name',
            os.fspath(out),
        )
    for cause in _causes(error):
        name = getattr(cause, 'filename', None)
        if (
            isinstance(cause, OSError)
            and cause.errno is not None
            and tmp is not None
            and isinstance(name, str | os.PathLike)
            and Path(name).name.startswith(tmp.name)
        ):
            return OSError(
                cause.errno,
                f'{prefix}{cause.strerror or os.strerror(cause.errno)}',
                os.fspath(out),
            )
    return None


def fsync_file(path: Path) -> None:
    """Flush a written file to the disk (before it is renamed into place).

    Args:
        path: The file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename) to the disk, where the system allows it.

    Args:
        folder: The folder.
    """
    if os.name == 'nt':
        return  # folders cannot be opened for fsync on Windows
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside *path*, renamed onto *path* only on success.

    The temporary file lives in the same folder (so the final :func:`os.replace`
    is atomic) and keeps the suffix of *path* (so format detection by extension
    still works). If the ``with`` block raises, the temporary file and any side
    files a writer left beside it are removed and nothing appears under *path*;
    an existing file under *path* is left untouched. Inside an
    :func:`output_transaction` the rename is undone if the transaction fails.

    Args:
        path: The final output file.

    Yields:
        The temporary path to write to (it does not exist yet).

    Raises:
        InvalidInputError: If *path* cannot be written (checked before yielding).
        OSError: Naming *path* (not the temporary file) and the cause, when
            the disk is full or the temporary file could not be written
            (:func:`write_error`).
    """
    out = check_writable(path)
    make_output_dir(out.parent)
    tmp = register_temporary(
        out.parent / f'.{out.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{out.suffix}'
    )
    try:
        yield tmp
        if not tmp.exists():
            raise InvalidInputError(out, 'the writer produced no file')
        # Flushed before the rename: a crash never leaves a short file under *out*
        # (and a full disk that delayed the allocation fails here, not later).
        if tmp.is_file():
            fsync_file(tmp)
        if _TRANSACTION is not None:
            _TRANSACTION.replace(tmp, out)
        else:
            os.replace(tmp, out)
        fsync_folder(out.parent)
    except BaseException as error:
        # Judged before the temporary file is removed (it may hold the space).
        reported = write_error(error, out, tmp)
        remove_temporaries(tmp)
        unregister_temporary(tmp)
        if reported is not None:
            raise reported from error
        raise
    # GDAL may leave an .aux.xml beside the temporary name.
    remove_temporaries(tmp)
    unregister_temporary(tmp)
