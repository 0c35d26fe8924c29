"""Many rasters in, one output each: listing, sharding across ranks, resume, manifest."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, InvalidInputError, MissingInputError

__all__ = [
    'BatchInput',
    'BatchRecord',
    'collect_inputs',
    'launch_ranks',
    'predict_many',
]

#: Raster files picked from a folder.
RASTER_SUFFIXES = ('.tif', '.tiff', '.vrt', '.jp2', '.img')
#: Text files that list one input per line.
LIST_SUFFIXES = ('.txt', '.lst')
#: The manifest written into the output folder.
MANIFEST = 'manifest.csv'


@dataclass
class BatchInput:
    """One job of a batch: what it reads and the stem of what it writes."""

    #: The input as listed (a path, URL, or ``collection.json#item``).
    label: str
    #: The rasters it reads (stacked as modalities).
    sources: list[str]
    #: Output stem (file stem, URL name or STAC item id).
    name: str


@dataclass
class BatchRecord:
    """One manifest row."""

    input: str
    output: str
    #: ``done``, ``skipped`` (outputs already complete) or ``failed``.
    status: str
    seconds: float
    error: str = ''
    rank: int = 0


def _expand(spec: str, assets: Sequence[str] | None) -> list[BatchInput]:
    from ..export.sources import is_virtual, source_name
    from ..export.stac import is_stac, select_assets

    if is_stac(spec):
        from ..export.stac import read_items

        return [
            BatchInput(f'{spec}#{item.id}', list(select_assets(item, assets)), item.id)
            for item in read_items(spec)
        ]
    if is_virtual(spec):
        return [BatchInput(spec, [spec], source_name(spec))]
    if spec.lower().endswith(LIST_SUFFIXES):
        if not os.path.isfile(spec):
            raise MissingInputError(spec, 'no such list of inputs')
        lines = Path(spec).read_text().splitlines()
        entries = [s for s in (line.strip() for line in lines) if s and s[0] != '#']
        return [found for entry in entries for found in _expand(entry, assets)]
    if any(c in spec for c in '*?['):
        files = sorted(glob.glob(spec, recursive=True))
        if not files:
            raise MissingInputError(spec, 'matches no file')
    elif os.path.isdir(spec):
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(spec)
            for name in names
            if name.lower().endswith(RASTER_SUFFIXES)
        )
        if not files:
            raise MissingInputError(
                spec, f'folder holds no raster ({", ".join(RASTER_SUFFIXES)})'
            )
    else:
        files = [spec]
    return [BatchInput(f, [f], source_name(f)) for f in files]


def collect_inputs(
    specs: Sequence[str | os.PathLike[str]], assets: Sequence[str] | None = None
) -> list[BatchInput]:
    """List the inputs of a batch, in a stable order (the same on every rank).

    Args:
        specs: Each a raster path or URL, a glob, a folder (its rasters,
            recursively), a ``.txt``/``.lst`` file of such entries (one per
            line, ``#`` comments; relative paths from the current folder), or
            a STAC Item/ItemCollection JSON (one input per item).
        assets: Asset keys or common names of the STAC items.

    Returns:
        The inputs.

    Raises:
        InvalidInputError: If two inputs would write the same output, or
            ``assets`` is given without a STAC input.
        MissingInputError: If a glob, folder or list yields nothing.
    """
    from ..export.stac import is_stac

    texts = [os.fspath(s) for s in specs]
    if assets and not any(is_stac(t) for t in texts):
        raise InvalidInputError(
            None, '--assets chooses assets of STAC items: give an item or collection'
        )
    inputs = [found for text in texts for found in _expand(text, assets)]
    if not inputs:
        raise InvalidInputError(None, 'no input raster given')
    seen: dict[str, str] = {}
    for entry in inputs:
        if entry.name in seen:
            raise InvalidInputError(
                entry.label,
                f'writes the same output name {entry.name!r} as {seen[entry.name]}; '
                'give inputs with distinct names (or run them in separate folders)',
            )
        seen[entry.name] = entry.label
    return inputs


def _complete(paths: Sequence[Path]) -> bool:
    """Whether every output exists and opens (GeoTIFF, VRT or vector)."""
    import rasterio
    from rasterio.errors import RasterioIOError

    for path in paths:
        if not path.is_file():
            return False
        try:
            if path.suffix.lower() in ('.tif', '.tiff', '.vrt'):
                with rasterio.open(path):
                    pass
            else:
                import pyogrio

                pyogrio.read_info(path)
        except (RasterioIOError, OSError, RuntimeError, ValueError):
            return False
    return True


def _run_one(
    entry: BatchInput,
    outputs: list[Path],
    job: Callable[[list[str], list[Path]], Any],
    rank: int,
) -> BatchRecord:
    from ..export.atomic import output_transaction
    from ..export.sources import recording_sources

    shown = ' '.join(os.fspath(p) for p in outputs)
    if _complete(outputs):
        return BatchRecord(entry.label, shown, 'skipped', 0.0, rank=rank)
    for out in outputs:  # what a killed run left of this input (only this rank runs it)
        for stale in out.parent.glob(f'.{glob.escape(out.stem)}.tmp-*'):
            stale.unlink(missing_ok=True)
    start = time.perf_counter()
    with output_transaction() as transaction:
        try:
            with recording_sources(entry.sources):
                job(entry.sources, outputs)
        except (InputError, OSError, RuntimeError, ValueError) as error:
            # One bad input fails alone: its outputs are undone, the batch goes on.
            transaction.rollback()
            message = ' '.join(str(error).split())
            seconds = time.perf_counter() - start
            return BatchRecord(entry.label, shown, 'failed', seconds, message, rank)
        # Kept whatever happens to later inputs: this is what a resume skips.
        transaction.commit()
    return BatchRecord(
        entry.label, shown, 'done', time.perf_counter() - start, rank=rank
    )


def predict_many(
    inputs: Sequence[BatchInput],
    output_dir: str | os.PathLike[str],
    job: Callable[[list[str], list[Path]], Any],
    suffixes: Sequence[str],
    *,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    progress: bool = False,
) -> list[BatchRecord] | None:
    """Run *job* on this rank's share of the inputs, then (rank 0) the manifest.

    Args:
        inputs: From :func:`collect_inputs` (the same list on every rank).
        output_dir: Folder of the outputs, the manifest and the mosaic.
        job: ``job(sources, outputs)`` writes the outputs of one input
            (atomically); an input error fails that input only.
        suffixes: The suffix of each output (``['.tif']``, ``['.gpkg']``).
        rank: This process's global rank.
        world_size: Number of ranks; rank ``r`` runs inputs ``r::world_size``.
        barrier: Waits for every rank (required when ``world_size > 1``).
        progress: Show a progress bar of this rank's inputs.

    Returns:
        On rank 0 the records of every input (also in ``manifest.csv``),
        None on the other ranks.
    """
    from tqdm import tqdm

    from ..export.atomic import atomic_output, make_output_dir, output_transaction

    if world_size > 1 and barrier is None:
        raise ValueError('several ranks need a barrier')
    with output_transaction() as transaction:
        folder = make_output_dir(output_dir)
        transaction.commit()  # the folder is the state a resume starts from
    records = []
    mine = list(inputs)[rank::world_size]
    for entry in tqdm(mine, desc=f'rank {rank}', disable=not progress, unit='input'):
        outputs = [folder / f'{entry.name}{suffix}' for suffix in suffixes]
        records.append(_run_one(entry, outputs, job, rank))
    part = folder / f'.predict-many-part-{rank}-of-{world_size}.json'
    with atomic_output(part) as tmp:
        tmp.write_text(json.dumps([asdict(r) for r in records]))
    if barrier is not None:
        barrier()
    if rank != 0:
        return None
    every: list[BatchRecord] = []
    for r in range(world_size):
        path = folder / f'.predict-many-part-{r}-of-{world_size}.json'
        every += [BatchRecord(**row) for row in json.loads(path.read_text())]
        path.unlink()
    order = {entry.label: i for i, entry in enumerate(inputs)}
    every.sort(key=lambda record: order[record.input])
    _write_manifest(folder / MANIFEST, every)
    _write_mosaics(folder, every)
    return every


def _write_manifest(path: Path, records: Sequence[BatchRecord]) -> None:
    """The manifest CSV: a skipped input keeps the time of the run that made it."""
    from ..export.atomic import atomic_output

    earlier: dict[str, dict[str, str]] = {}
    if path.is_file():
        with path.open(newline='') as f:
            earlier = {row['input']: row for row in csv.DictReader(f)}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(['input', 'output', 'status', 'seconds', 'finished', 'error'])
    stamp = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    for r in records:
        seconds, finished = f'{r.seconds:.3f}', stamp
        if r.status == 'skipped':
            before = earlier.get(r.input, {})
            seconds, finished = before.get('seconds', ''), before.get('finished', '')
        writer.writerow([r.input, r.output, r.status, seconds, finished, r.error])
    with atomic_output(path) as tmp:
        tmp.write_text(text.getvalue())


def _write_mosaics(folder: Path, records: Sequence[BatchRecord]) -> list[Path]:
    """``mosaic.vrt`` of the raster outputs (one per CRS when they differ)."""
    import rasterio

    from ..export.raster import crs_to_string
    from ..export.vrt import write_vrt_mosaic

    groups: dict[str, list[Path]] = {}
    for record in records:
        if record.status == 'failed':
            continue
        for name in record.output.split(' '):
            path = Path(name)
            if path.suffix.lower() in ('.tif', '.tiff') and path.is_file():
                with rasterio.open(path) as src:
                    groups.setdefault(crs_to_string(src.crs), []).append(path)
    written = []
    for crs, paths in groups.items():
        tag = (
            ''
            if len(groups) == 1
            else '-' + ''.join(c if c.isalnum() else '_' for c in crs[:40])
        )
        try:
            written.append(write_vrt_mosaic(paths, folder / f'mosaic{tag}.vrt'))
        except InvalidInputError as error:  # another pixel size or band layout
            import warnings

            warnings.warn(f'no VRT mosaic: {error}', stacklevel=2)
    return written


def launch_ranks(
    devices: int | str = 1, num_nodes: int = 1, accelerator: str = 'auto'
) -> Any:
    """Start (or join) the ranks of a run with Lightning Fabric.

    One process per device on each node: Fabric starts them (``--devices N``
    re-runs the command N times), or finds them started by ``torchrun`` or
    SLURM (``srun``, one task per device), and sets up ``torch.distributed``
    (gloo on CPUs, NCCL on GPUs). Under ``torchrun`` the defaults take the
    ranks torchrun started.

    Args:
        devices: Devices per node (a number, or ``'auto'``).
        num_nodes: Number of nodes.
        accelerator: ``'cpu'``, ``'gpu'``, ``'auto'`` ...

    Returns:
        The launched ``lightning.fabric.Fabric`` (its ``global_rank``,
        ``world_size``, ``device`` and ``barrier``).
    """
    from lightning.fabric import Fabric

    started = int(os.environ.get('WORLD_SIZE', '1'))  # by torchrun
    if started > 1 and devices in (1, '1') and num_nodes == 1:
        devices = int(os.environ.get('LOCAL_WORLD_SIZE', started))
        num_nodes = started // devices
    several = num_nodes > 1 or devices not in (1, '1')
    fabric = Fabric(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy='ddp' if several else 'auto',
    )
    fabric.launch()
    return fabric
