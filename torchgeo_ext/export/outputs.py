"""Output safety: check every output path of a job before its first byte is written."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InvalidInputError
from .atomic import check_writable, check_writable_dir

__all__ = [
    'RASTER_SUFFIXES',
    'Output',
    'check_local_output',
    'check_outputs',
    'directory_output',
    'file_output',
    'input_files',
    'non_local',
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

    Raises:
        InvalidInputError: If *path* is a URL or a GDAL virtual path.
    """
    check_local_output(path, label)
    return Output(Path(path), 'raster', label)


def vector_output(path: PathLike, label: str = '--vector') -> Output:
    """A vector output (GeoPackage, GeoJSON or GeoParquet by extension).

    Args:
        path: Where.
        label: How the user named it.

    Returns:
        The output description.

    Raises:
        InvalidInputError: If *path* is a URL or a GDAL virtual path.
    """
    check_local_output(path, label)
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

    Raises:
        InvalidInputError: If *path* is a URL or a GDAL virtual path.
    """
    check_local_output(path, label)
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

    Raises:
        InvalidInputError: If *path* is a URL or a GDAL virtual path.
    """
    check_local_output(path, label)
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


#: A URL scheme; ``Path`` turns ``s3://b/k`` into ``s3:/b/k``, so one slash suffices.
_URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]+:/')
#: GDAL virtual file systems that read an archive on the local disk.
_VSI_ARCHIVES = ('/vsizip/', '/vsitar/', '/vsigzip/', '/vsi7z/', '/vsirar/')
#: A GDAL subdataset name with a quoted file: ``NETCDF:"scene.nc":band``.
_SUBDATASET = re.compile(r'^[A-Z][A-Z0-9_]*:"([^"]+)"')
#: The most files followed from one input (VRTs of VRTs).
_MAX_INPUT_FILES = 10_000


def non_local(path: PathLike) -> str | None:
    """What a path that is not a local file is: a URL or a GDAL virtual path.

    Args:
        path: A path as the user gave it (``s3://b/k``, ``/vsizip/a.zip/b``,
            or ``s3:/b/k`` after :class:`~pathlib.Path` collapsed the slashes).

    Returns:
        ``'a URL'``, ``'a GDAL virtual path'`` or None for a local path.
    """
    text = os.fspath(path)
    if text.startswith('/vsi'):
        return 'a GDAL virtual path'
    if _URL.match(text):
        return 'a URL'
    return None


def check_local_output(path: PathLike, label: str = 'the output') -> None:
    """Refuse an output that is a URL or a GDAL virtual path.

    Outputs are written atomically to local files; ``s3://bucket/o.tif`` must
    not become the local ``./s3:/bucket/o.tif``.

    Args:
        path: The output as the user gave it.
        label: How the user named it.

    Raises:
        InvalidInputError: If *path* is not a local path.
    """
    kind = non_local(path)
    if kind is not None:
        raise InvalidInputError(
            path,
            f'{label} is {kind}; outputs are written to local files only: '
            'write a local file and copy it there',
        )


def _archive(inner: str, base: Path | None) -> Path | None:
    """The local archive a ``/vsizip/``-style path reads (prefix removed)."""
    if inner.startswith('/vsi'):
        return _local_file(inner, base)  # an archive inside an archive
    if inner.startswith('{') and '}' in inner:
        candidate = Path(inner[1 : inner.index('}')])
    else:
        candidate = Path(inner)
        # The archive is the first component that is a file: a.zip/dir/b.tif.
        for prefix in (*reversed(candidate.parents), candidate):
            if prefix != Path(prefix.anchor) and prefix.is_file():
                candidate = prefix
                break
    if base is not None and not candidate.is_absolute():
        candidate = base / candidate
    return candidate


def _local_file(name: str, base: Path | None = None) -> Path | None:
    """The local file GDAL reads for a dataset name (None: not local).

    Args:
        name: A file name as GDAL takes it: a path, ``vrt://path?options``,
            a subdataset name, a ``/vsizip/`` member.
        base: The folder relative paths are in (None: the working folder).
    """
    name = name.strip()
    if name.startswith('vrt://'):
        name = name[len('vrt://') :].split('?', 1)[0]
    match = _SUBDATASET.match(name)
    if match:
        name = match.group(1)
    for prefix in _VSI_ARCHIVES:
        if name.startswith(prefix):
            return _archive(name[len(prefix) :], base)
    if not name or non_local(name) is not None:
        return None
    path = Path(name)
    return base / path if base is not None and not path.is_absolute() else path


def _vrt_sources(vrt: Path) -> Iterator[Path]:
    """The files a VRT (raster or OGR) names as its sources."""
    try:
        with open(vrt, 'rb') as f:
            head = f.read(256).lstrip()
        if not head.startswith((b'<VRTDataset', b'<OGRVRTDataSource')):
            return
        root = ET.parse(vrt).getroot()
    except (OSError, ET.ParseError):
        return  # not a VRT, or unreadable: the reader will say so
    for element in root.iter():
        if element.tag in ('SourceFilename', 'SourceDataset', 'SrcDataSource'):
            relative = element.get('relativeToVRT', '0').strip() == '1'
            # GDAL resolves relativeToVRT="0" paths from the working folder.
            source = _local_file(element.text or '', vrt.parent if relative else None)
            if source is not None:
                yield source


def _side_files(path: Path) -> list[Path]:
    """The side files GDAL opens beside a raster (if they exist)."""
    name, stem, ext = path.name, path.stem, path.suffix[1:]
    names = [
        f'{name}.aux.xml',
        f'{name}.ovr',
        f'{name}.msk',
        f'{name}.aux',
        f'{stem}.aux',
        f'{stem}.wld',
        f'{stem}.prj',
        f'{stem}.rpb',
        f'{stem}_rpc.txt',
        f'{stem}.imd',
    ]
    if ext:
        # World files: .tif -> .tfw and .tifw, .jpg -> .jgw and .jpgw.
        names += [f'{stem}.{ext[0]}{ext[-1]}w', f'{stem}.{ext}w']
    if ext.lower() == 'hdr':
        names += [stem, f'{stem}.img', f'{stem}.dat']  # ENVI header -> data
    else:
        names.append(f'{name}.hdr' if not ext else f'{stem}.hdr')
    found = []
    for side in names:
        head, dot, tail = side.rpartition('.')
        for variant in {
            side,
            f'{head}{dot}{tail.upper()}',
            f'{head}{dot}{tail.lower()}',
        }:
            candidate = path.with_name(variant)
            if candidate != path and candidate.is_file():
                found.append(candidate)
    return found


def input_files(path: PathLike) -> list[tuple[Path, str]]:
    """Every local file reading *path* may open, and why.

    Followed: the sources of VRTs (nested, relative or not), the archive of a
    ``/vsizip/`` (``/vsitar/``, ``/vsigzip/``, ...) member, the data file of an
    ENVI header, and the side files GDAL opens beside each of them
    (``.aux.xml``, ``.ovr``, ``.msk``, world files, ``.prj``, RPC/IMD
    metadata). URLs and remote virtual paths read nothing local.

    Args:
        path: An input, as given (a string keeps ``//`` intact).

    Returns:
        ``(file, why)`` pairs, the input itself first (why ``''``); the other
        files exist.
    """
    first = _local_file(os.fspath(path))
    if first is None:
        return []
    archive = os.fspath(path).startswith(_VSI_ARCHIVES)
    found: list[tuple[Path, str]] = [(first, 'the archive it reads' if archive else '')]
    seen = {os.path.realpath(first)}
    queue = [first]
    while queue and len(found) < _MAX_INPUT_FILES:
        current = queue.pop(0)
        related = [(src, f'a source of {current}') for src in _vrt_sources(current)]
        related += [
            (side, f'a side file of {current}') for side in _side_files(current)
        ]
        for candidate, why in related:
            key = os.path.realpath(candidate)
            if key not in seen:
                seen.add(key)
                found.append((candidate, why))
                queue.append(candidate)
    return found


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

    Called once, up front, with all the outputs a job will write and all the
    files it reads. Refused, with one error naming the path:

    * an output that is a URL or a GDAL virtual path (``s3://...``,
      ``/vsizip/...``): outputs are local files, never reinterpreted;
    * an output that is one of the inputs (the same file after resolving links
      and ``..``, or a hard link to it) or a file an input reads with it
      (:func:`input_files`: VRT sources, the archive of a ``/vsizip/`` member,
      the side files GDAL opens), which would destroy the input;
    * two outputs that are the same file (one would silently replace the other);
    * an extension that does not match the format written, naming the formats
      accepted (GeoTIFF ``.tif``/``.tiff``; vector formats by
      :data:`~torchgeo_ext.export.vector.VECTOR_DRIVERS`);
    * an existing folder where a file is written (or a file where a folder is),
      an unwritable location, or a read-only existing file.

    Nothing is created by the check; the writers create folders when they write
    (:func:`~torchgeo_ext.export.atomic.atomic_output`).

    Args:
        outputs: What the job writes (None entries are skipped).
        inputs: What it reads: files or folders (None entries are skipped).

    Returns:
        The output paths, absolute, in order.

    Raises:
        InvalidInputError: On the first problem found.
    """
    outs = [out for out in outputs if out is not None]
    for out in outs:
        check_local_output(out.path, out.label)
    # Inputs stay strings here: Path() would turn 's3://b/k' into 's3:/b/k'.
    ins = [p for p in inputs if p is not None and os.fspath(p) != '']
    for source in ins:
        for candidate, why in input_files(source):
            if not candidate.exists():
                continue
            for out in outs:
                if not same_file(out.path, candidate):
                    continue
                if not why:
                    problem = (
                        f'{out.label} is the input {os.fspath(source)} (same file)'
                    )
                else:
                    problem = (
                        f'{out.label} is read with the input {os.fspath(source)} '
                        f'({why})'
                    )
                raise InvalidInputError(
                    out.path,
                    f'{problem}; writing it would destroy the input: '
                    'choose another output path',
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
