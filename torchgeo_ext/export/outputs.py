"""Output safety: check every output path of a job before its first byte is written.

:func:`check_outputs` is called once, up front, with all the outputs a job
will write and all the files it reads. It refuses, with one
:class:`~torchgeo_ext.errors.InvalidInputError` naming the path:

* an output that is one of the inputs (the same file after resolving links
  and ``..``, or a hard link to it), which would destroy the input;
* two outputs that are the same file (one would silently replace the other);
* an extension that does not match the format written, naming the formats
  accepted (GeoTIFF ``.tif``/``.tiff``; vector formats by
  :data:`~torchgeo_ext.export.vector.VECTOR_DRIVERS`);
* an existing folder where a file is written (or a file where a folder is),
  an unwritable location, or a read-only existing file.

Nothing is created by the check; the writers create folders when they write
(:func:`~torchgeo_ext.export.atomic.atomic_output`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InvalidInputError
from .atomic import check_writable, check_writable_dir

__all__ = [
    'RASTER_SUFFIXES',
    'Output',
    'check_outputs',
    'directory_output',
    'file_output',
    'raster_output',
    'same_file',
    'vector_output',
]

#: Extensions of the GeoTIFFs this library writes.
RASTER_SUFFIXES = ('.tif', '.tiff')

PathLike = str | os.PathLike[str]
OutputKind = Literal['raster', 'vector', 'file', 'directory']


@dataclass(frozen=True)
class Output:
    """One output a job will write.

    Attributes:
        path: Where.
        kind: ``'raster'`` (GeoTIFF), ``'vector'`` (by extension), ``'file'``
            (any single file) or ``'directory'`` (a folder of files).
        label: How the user named it, for messages (e.g. ``'--vector'``).
        suffixes: Accepted extensions for ``'file'`` outputs (None: any).
    """

    path: Path
    kind: OutputKind
    label: str = 'the output'
    suffixes: tuple[str, ...] | None = None


def raster_output(path: PathLike, label: str = 'the output') -> Output:
    """A GeoTIFF output.

    Args:
        path: Where.
        label: How the user named it.

    Returns:
        The output description.
    """
    return Output(Path(path), 'raster', label)


def vector_output(path: PathLike, label: str = '--vector') -> Output:
    """A vector output (GeoPackage, GeoJSON or GeoParquet by extension).

    Args:
        path: Where.
        label: How the user named it.

    Returns:
        The output description.
    """
    return Output(Path(path), 'vector', label)


def file_output(
    path: PathLike, label: str = 'the output', suffixes: Iterable[str] | None = None
) -> Output:
    """Any single-file output, optionally restricted to some extensions.

    Args:
        path: Where.
        label: How the user named it.
        suffixes: Accepted extensions (lower case, with the dot).

    Returns:
        The output description.
    """
    return Output(
        Path(path), 'file', label, None if suffixes is None else tuple(suffixes)
    )


def directory_output(path: PathLike, label: str = 'the output folder') -> Output:
    """A folder the job fills with files.

    Args:
        path: Where.
        label: How the user named it.

    Returns:
        The output description.
    """
    return Output(Path(path), 'directory', label)


def _resolve(path: Path) -> Path:
    return Path(os.path.realpath(path.expanduser()))


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file (links and ``..`` resolved).

    Args:
        a: A path.
        b: Another path; neither needs to exist.

    Returns:
        True if they are the same file or folder.
    """
    pa, pb = Path(a), Path(b)
    if _resolve(pa) == _resolve(pb):
        return True
    try:
        return os.path.samefile(pa, pb)  # hard links
    except OSError:
        return False


def _input_files(path: Path) -> list[Path]:
    """An input and the side files read with it (ENVI header <-> data file)."""
    files = [path]
    if path.suffix.lower() == '.hdr':
        files += [
            path.with_suffix(''),
            path.with_suffix('.img'),
            path.with_suffix('.dat'),
        ]
    else:
        files.append(path.with_suffix('.hdr') if path.suffix else Path(f'{path}.hdr'))
    return files


def _check_format(out: Output) -> None:
    suffix = out.path.suffix.lower()
    shown = suffix or '(no extension)'
    if out.kind == 'raster' and suffix not in RASTER_SUFFIXES:
        raise InvalidInputError(
            out.path,
            f'{out.label} is written as a GeoTIFF but its extension is {shown!r}; '
            f'use one of {", ".join(RASTER_SUFFIXES)}',
        )
    if out.kind == 'vector':
        from .vector import VECTOR_DRIVERS

        if suffix not in VECTOR_DRIVERS:
            raise InvalidInputError(
                out.path,
                f'{out.label}: unknown vector format {shown!r}; '
                f'use one of {", ".join(VECTOR_DRIVERS)}',
            )
    if out.kind == 'file' and out.suffixes is not None and suffix not in out.suffixes:
        raise InvalidInputError(
            out.path,
            f'{out.label}: extension {shown!r} does not match what is written; '
            f'use one of {", ".join(out.suffixes)}',
        )


def check_outputs(
    outputs: Iterable[Output | None], inputs: Iterable[PathLike | None] = ()
) -> list[Path]:
    """Check a job's outputs against each other, its inputs and the file system.

    Args:
        outputs: What the job writes (None entries are skipped).
        inputs: What it reads: files or folders (None entries are skipped).

    Returns:
        The output paths, absolute, in order.

    Raises:
        InvalidInputError: On the first problem found (see the module docs).
    """
    outs = [out for out in outputs if out is not None]
    ins = [Path(p) for p in inputs if p is not None and os.fspath(p) != '']
    for out in outs:
        for source in ins:
            for candidate in _input_files(source):
                if candidate.exists() and same_file(out.path, candidate):
                    raise InvalidInputError(
                        out.path,
                        f'{out.label} is the input {source} (same file); writing it '
                        'would destroy the input: choose another output path',
                    )
    for i, out in enumerate(outs):
        for other in outs[:i]:
            if same_file(out.path, other.path):
                raise InvalidInputError(
                    out.path,
                    f'{other.label} and {out.label} are the same file; one would '
                    'replace the other: give them different paths',
                )
    checked = []
    for out in outs:
        if out.kind == 'directory':
            checked.append(check_writable_dir(out.path))
        else:
            checked.append(check_writable(out.path))
    for out in outs:
        _check_format(out)
    return checked
