"""predict-many: inputs, resume, manifest, mosaic, ranks (issue 27)."""

import csv
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from torchgeo_ext.cli import main
from torchgeo_ext.errors import InvalidInputError, MissingInputError
from torchgeo_ext.export.http_server import LocalRangeServer
from torchgeo_ext.export.raster import open_inputs, write_raster
from torchgeo_ext.pipelines.batch import BatchRecord, collect_inputs, predict_many

ROOT = Path(__file__).parents[2]
OWN = ROOT / 'tests' / 'data' / 'own'
STAC = ROOT / 'tests' / 'data' / 'remote'
KILL_SCRIPT = Path(__file__).parent / 'batch_kill_script.py'

Serve = Callable[[str | os.PathLike[str]], LocalRangeServer]


def write_tiles(folder: Path, count: int = 5) -> list[Path]:
    """Cut the own-imagery fake scene into 128 x 128 tiles (a folder of inputs)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiles = []
    with open_inputs(OWN / 'rgb.tif') as stack:
        for k in range(count):
            window = Window(128 * (k % 4), 128 * (k // 4), 128, 128)
            data, _ = stack.read(window)
            transform = rasterio.windows.transform(window, stack.transform)
            path = folder / f'tile_{k}.tif'
            write_raster(
                path, data.astype(np.uint8), crs=stack.crs, transform=transform
            )
            tiles.append(path)
    return tiles


def rows(folder: Path) -> list[dict[str, str]]:
    with (folder / 'manifest.csv').open(newline='') as f:
        return list(csv.DictReader(f))


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_collect_inputs_from_globs_folders_lists_and_stac(
    tmp_path: Path, serve: Serve
) -> None:
    tiles = write_tiles(tmp_path / 'tiles', 3)
    assert [i.name for i in collect_inputs([tmp_path / 'tiles'])] == [
        'tile_0',
        'tile_1',
        'tile_2',
    ]
    assert [
        i.sources for i in collect_inputs([str(tmp_path / 'tiles' / '*_1.tif')])
    ] == [[str(tiles[1])]]
    url = serve(tmp_path / 'tiles').url('tile_2.tif')
    listing = tmp_path / 'inputs.txt'
    listing.write_text(f'# scenes\n{tiles[0]}\n\n{url}\n')
    found = collect_inputs([listing])
    assert [(i.name, i.sources) for i in found] == [
        ('tile_0', [str(tiles[0])]),
        ('tile_2', [url]),
    ]
    items = collect_inputs([STAC / 'items.json'], ['red', 'nir'])
    assert [i.name for i in items] == ['scene_a', 'scene_b']
    assert [len(i.sources) for i in items] == [2, 2]
    assert items[0].label == f'{STAC / "items.json"}#scene_a'
    with pytest.raises(InvalidInputError, match=r"same output name 'tile_0'"):
        collect_inputs([tiles[0], listing])
    with pytest.raises(InvalidInputError, match='--assets chooses assets of STAC'):
        collect_inputs([listing], ['red'])
    with pytest.raises(MissingInputError, match='matches no file'):
        collect_inputs([str(tmp_path / 'none*.tif')])


def copy_job(sources: list[str], outputs: list[Path]) -> None:
    """A job that writes the first band, doubled (a stand-in model)."""
    with open_inputs(sources) as stack:
        data, _ = stack.read(Window(0, 0, stack.width, stack.height))
        write_raster(outputs[0], data[:1] * 2, crs=stack.crs, transform=stack.transform)


def test_outputs_manifest_mosaic_skip_and_failures(tmp_path: Path) -> None:
    tiles = write_tiles(tmp_path / 'tiles', 4)
    (tmp_path / 'tiles' / 'tile_9.tif').write_text('not a raster')
    out = tmp_path / 'out'
    inputs = collect_inputs([tmp_path / 'tiles'])
    records = predict_many(inputs, out, copy_job, ['.tif'])
    assert records is not None
    assert [r.status for r in records] == ['done'] * 4 + ['failed']
    assert 'tile_9.tif: not a raster' in records[-1].error
    assert not (out / 'tile_9.tif').exists()
    for tile in tiles:
        np.testing.assert_array_equal(read(out / tile.name), read(tile)[:1] * 2.0)
    manifest = rows(out)
    assert [m['status'] for m in manifest] == ['done'] * 4 + ['failed']
    assert manifest[0]['output'] == str(out / 'tile_0.tif')
    with (
        rasterio.open(out / 'mosaic.vrt') as mosaic,
        rasterio.open(OWN / 'rgb.tif') as rgb,
    ):
        assert (mosaic.crs, mosaic.transform) == (rgb.crs, rgb.transform)
        np.testing.assert_array_equal(
            mosaic.read(1, window=Window(0, 0, 512, 128)),
            rgb.read(1, window=Window(0, 0, 512, 128)) * 2.0,
        )
    before = {p.name: p.stat().st_mtime_ns for p in out.glob('tile_*.tif')}
    again = predict_many(inputs, out, copy_job, ['.tif'])
    assert again is not None
    assert [r.status for r in again] == ['skipped'] * 4 + ['failed']
    assert {p.name: p.stat().st_mtime_ns for p in out.glob('tile_*.tif')} == before
    assert [m['seconds'] for m in rows(out)][:4] == [m['seconds'] for m in manifest][:4]


def test_ranks_share_the_inputs_and_rank_zero_writes_the_manifest(
    tmp_path: Path,
) -> None:
    write_tiles(tmp_path / 'tiles', 5)
    inputs = collect_inputs([tmp_path / 'tiles'])
    seen: list[str] = []

    def job(sources: list[str], outputs: list[Path]) -> None:
        seen.append(outputs[0].stem)
        copy_job(sources, outputs)

    # Rank 1 first (its part waits on disk), then rank 0 merges: no barrier needed here.
    assert (
        predict_many(
            inputs,
            tmp_path / 'out',
            job,
            ['.tif'],
            rank=1,
            world_size=2,
            barrier=lambda: None,
        )
        is None
    )
    assert seen == ['tile_1', 'tile_3']
    assert not (tmp_path / 'out' / 'manifest.csv').exists()
    records = predict_many(
        inputs,
        tmp_path / 'out',
        job,
        ['.tif'],
        rank=0,
        world_size=2,
        barrier=lambda: None,
    )
    assert records is not None
    assert seen == ['tile_1', 'tile_3', 'tile_0', 'tile_2', 'tile_4']
    assert [(r.input, r.rank) for r in records] == [
        (i.label, k % 2) for k, i in enumerate(inputs)
    ]
    assert not list((tmp_path / 'out').glob('.predict-many-part-*'))
    assert isinstance(records[0], BatchRecord)


def test_killed_run_resumes_without_redoing_finished_inputs(
    tmp_path: Path, serve: Serve
) -> None:
    tiles = write_tiles(tmp_path / 'tiles', 5)
    server = serve(tmp_path / 'tiles')
    listing = tmp_path / 'inputs.txt'
    listing.write_text(''.join(f'{server.url(t.name)}\n' for t in tiles))
    out = tmp_path / 'out'
    env = {
        **os.environ,
        'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
    }
    killed = subprocess.run(
        [sys.executable, str(KILL_SCRIPT), str(listing), str(out), '2'],
        env=env,
        check=False,
        timeout=300,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    finished = sorted(p.name for p in out.glob('tile_*.tif'))
    assert finished == ['tile_0.tif', 'tile_1.tif']  # killed while writing the third
    assert not (out / 'manifest.csv').exists()
    stamps = {name: (out / name).stat().st_mtime_ns for name in finished}

    argv = [
        'predict-many',
        str(listing),
        '-o',
        str(out),
        '--method',
        'rx',
        '--accelerator',
        'cpu',
    ]
    assert main(argv) == 0
    manifest = rows(out)
    assert [m['status'] for m in manifest] == ['skipped'] * 2 + ['done'] * 3
    assert {n: (out / n).stat().st_mtime_ns for n in finished} == stamps
    assert not list(out.glob('.tile_2.tmp-*'))  # the killed write's leftover

    # Everything equals a run that was never killed.
    clean = tmp_path / 'clean'
    assert main([*argv[:3], str(clean), *argv[4:]]) == 0
    for tile in tiles:
        np.testing.assert_array_equal(read(out / tile.name), read(clean / tile.name))


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path: Path, serve: Serve) -> None:
    # One process (in this one), two started by Lightning Fabric (--devices 2), two
    # by torchrun.
    tiles = write_tiles(tmp_path / 'tiles', 5)
    server = serve(tmp_path / 'tiles')
    listing = tmp_path / 'inputs.txt'
    listing.write_text(''.join(f'{server.url(t.name)}\n' for t in tiles[:3]))
    specs = [str(listing), str(tiles[3]), str(tiles[4])]
    env = {
        **os.environ,
        'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
    }
    cli = ['-m', 'torchgeo_ext.cli', 'predict-many', *specs, '--method', 'rx']
    torchrun = ['-m', 'torch.distributed.run', '--nproc-per-node', '2']
    runs = {
        'fabric': [*cli, '--accelerator', 'cpu', '--devices', '2'],
        'torchrun': [*torchrun, *cli, '--accelerator', 'cpu'],
    }
    outputs = {'one': tmp_path / 'one'}
    assert main([*cli[2:], '--accelerator', 'cpu', '-o', str(outputs['one'])]) == 0
    for name, argv in runs.items():
        out = tmp_path / name
        done = subprocess.run(
            [sys.executable, *argv, '-o', str(out)],
            env=env,
            check=False,
            timeout=500,
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        assert (
            '5 done, 0 skipped (already complete), 0 failed over 2 process'
            in done.stdout.decode()
        )
        outputs[name] = out
    for name in ('fabric', 'torchrun'):
        for tile in tiles:
            np.testing.assert_array_equal(
                read(outputs['one'] / tile.name), read(outputs[name] / tile.name)
            )
        assert [(r['input'], r['status']) for r in rows(outputs['one'])] == [
            (r['input'], r['status']) for r in rows(outputs[name])
        ]
    with rasterio.open(outputs['fabric'] / 'mosaic.vrt') as mosaic:
        assert mosaic.count == 1
