"""Atomic file output: write to a temporary sibling, rename on success."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidInputError

__all__ = ['atomic_output', 'check_writable', 'remove_temporaries']


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Check up front that *path* can be written, creating missing parent folders.

    Args:
        path: The output file.

    Returns:
        The output path as an absolute :class:`~pathlib.Path`.

    Raises:
        InvalidInputError: If the path is a folder, its parent cannot be created,
            or nothing can be written in the parent folder.
    """
    out = Path(path).expanduser().absolute()
    if out.is_dir():
        raise InvalidInputError(out, 'cannot write the output: this is a folder')
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInputError(
            out, f'cannot write the output: cannot create its folder ({err.strerror})'
        ) from err
    # os.access is not enough (root, ACLs, read-only mounts): really create a file.
    probe = out.parent / f'.{out.name}.probe-{secrets.token_hex(4)}'
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except OSError as err:
        raise InvalidInputError(
            out, f'cannot write the output: {err.strerror or err} in {out.parent}'
        ) from err
    os.close(fd)
    os.unlink(probe)
    if out.exists() and not os.access(out, os.W_OK) and os.name != 'nt':
        # Renaming onto a read-only file works on POSIX, but the user asked for
        # it to be read-only: respect that.
        raise InvalidInputError(out, 'cannot write the output: the file is read-only')
    return out


def remove_temporaries(tmp: Path) -> None:
    """Remove a temporary file and its side files (``.aux.xml``, ``-journal``, ...).

    Args:
        tmp: The temporary path handed out by :func:`atomic_output`.
    """
    for leftover in tmp.parent.glob(f'{tmp.name}*'):
        with contextlib.suppress(OSError):
            if leftover.is_dir():
                for child in leftover.iterdir():
                    child.unlink()
                leftover.rmdir()
            else:
                leftover.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside *path*, renamed onto *path* only on success.

    The temporary file lives in the same folder (so the final :func:`os.replace`
    is atomic) and keeps the suffix of *path* (so format detection by extension
    still works). If the ``with`` block raises, the temporary file and any side
    files a writer left beside it are removed and nothing appears under *path*;
    an existing file under *path* is left untouched.

    Args:
        path: The final output file.

    Yields:
        The temporary path to write to (it does not exist yet).

    Raises:
        InvalidInputError: If *path* cannot be written (checked before yielding).
    """
    out = check_writable(path)
    tmp = (
        out.parent / f'.{out.stem}.tmp-{os.getpid()}-{secrets.token_hex(4)}{out.suffix}'
    )
    try:
        yield tmp
        if not tmp.exists():
            raise InvalidInputError(out, 'the writer produced no file')
        os.replace(tmp, out)
    except BaseException:
        remove_temporaries(tmp)
        raise
    # GDAL may leave an .aux.xml beside the temporary name.
    remove_temporaries(tmp)
