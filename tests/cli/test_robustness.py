"""Robustness of every subcommand against bad inputs, unsafe outputs and failures.

Each probe runs one command line and checks what a user would: the exit
status, exactly one line on stderr naming the file and the problem, no
traceback, nothing left under the output name or beside it, and every input
byte-identical afterwards. Interruptions (SIGINT, SIGTERM) are probed with
real subprocesses in ``test_signals.py``.
"""

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
import torch

from torchgeo_ext.cli import main

from .conftest import CONF, FYH_RAW, REPO, Assets, tree, write_raster

Argv = Callable[[Assets, Path], list[str]]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as error:  # argparse usage errors
        status = int(error.code or 0)
    return status, capsys.readouterr().err


def assert_one_line(err: str, *names: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert 'Traceback' not in err, err
    assert len(lines) == 1, err
    assert 'error:' in lines[0], err
    for name in names:
        assert name in lines[0], f'{name!r} not in {lines[0]!r}'
    return lines[0]


def probe_refused(
    argv: list[str],
    names: tuple[str, ...],
    assets: Assets,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run a command that must be refused and check that nothing changed."""
    before, shared = tree(work), tree(assets.root)
    status, err = run(argv, capsys)
    assert status == 2, err
    line = assert_one_line(err, *names)
    assert tree(work) == before
    assert tree(assets.root) == shared
    return line


# --- the command lines, by class --------------------------------------------


def anomaly(*extra: str, input: str = 'scene.tif') -> Argv:
    def argv(a: Assets, w: Path) -> list[str]:
        return ['anomaly', str(w / input), *extra]

    return argv


def segment(*extra: str, checkpoint: str = 'dianet') -> Argv:
    def argv(a: Assets, w: Path) -> list[str]:
        ckpt = getattr(a, checkpoint) if hasattr(a, checkpoint) else w / checkpoint
        return ['segment', str(w / 'seg.tif'), '--checkpoint', str(ckpt), *extra]

    return argv


def detect(*extra: str, checkpoint: str = 'superyolo', inputs: str = 'rgb,ir') -> Argv:
    def argv(a: Assets, w: Path) -> list[str]:
        ckpt = getattr(a, checkpoint) if hasattr(a, checkpoint) else w / checkpoint
        files = [str(w / f'{name}.tif') for name in inputs.split(',')]
        return ['detect', *files, '--checkpoint', str(ckpt), *extra]

    return argv


def demo(*extra: str) -> Argv:
    def argv(a: Assets, w: Path) -> list[str]:
        return ['demo', *extra]

    return argv


def fyh(*extra: str) -> Argv:
    def argv(a: Assets, w: Path) -> list[str]:
        return ['fyh-build', str(FYH_RAW / 'FY4A'), str(FYH_RAW / 'Himawari'), *extra]

    return argv


def at(work: Path, argv: list[str]) -> list[str]:
    """Resolve ``@name`` (and ``--option=@name``) arguments to paths in the working folder."""
    resolved = []
    for arg in argv:
        option, equals, value = arg.rpartition('=')
        if equals and value.startswith('@'):
            arg = f'{option}={work / value[1:]}'
        elif arg.startswith('@'):
            arg = str(work / arg[1:])
        resolved.append(arg)
    return resolved


# Output paths are written '@name' (in the working folder).
REFUSED: list[object] = [
    # An output that is an input: same path, symlink, '..', hard link.
    pytest.param(
        anomaly('-o', '@scene.tif'),
        ('scene.tif', 'is the input'),
        id='anomaly-out-is-input',
    ),
    pytest.param(
        anomaly('-o', '@link.tif'),
        ('link.tif', 'is the input'),
        id='anomaly-out-symlink-to-input',
    ),
    pytest.param(
        anomaly('-o', '@sub/../scene.tif'),
        ('scene.tif', 'is the input'),
        id='anomaly-out-dotdot-input',
    ),
    pytest.param(
        anomaly('-o', '@hard.tif'),
        ('hard.tif', 'is the input'),
        id='anomaly-out-hardlink-to-input',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@scene.tif'),
        ('scene.tif', 'is the input'),
        id='anomaly-vector-is-input',
    ),
    pytest.param(
        segment('-o', '@seg.tif'),
        ('seg.tif', 'is the input'),
        id='segment-out-is-input',
    ),
    pytest.param(
        segment('-o', '@link.tif'),
        ('link.tif', 'is the input'),
        id='segment-out-symlink-to-input',
    ),
    pytest.param(
        detect('-o', '@rgb.tif'), ('rgb.tif', 'is the input'), id='detect-out-is-input'
    ),
    pytest.param(
        fyh('-o', str(FYH_RAW / 'FY4A')),
        ('FY4A', 'is the input'),
        id='fyh-out-is-input',
    ),
    # Two outputs on one path.
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@o.tif'),
        ('o.tif', 'same file'),
        id='anomaly-raster-and-vector-same',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@sub/../o.tif'),
        ('o.tif', 'same file'),
        id='anomaly-raster-and-vector-same-dotdot',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--vector', '@o.tif'),
        ('o.tif', 'same file'),
        id='segment-raster-and-vector-same',
    ),
    # Extensions that do not match what is written.
    pytest.param(anomaly('-o', '@o.png'), ('o.png', '.tif'), id='anomaly-out-png'),
    pytest.param(anomaly('-o', '@o.txt'), ('o.txt', '.tif'), id='anomaly-out-txt'),
    pytest.param(anomaly('-o', '@o.gpkg'), ('o.gpkg', '.tif'), id='anomaly-out-gpkg'),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@o.shp'),
        ('o.shp', '.gpkg'),
        id='anomaly-vector-shp',
    ),
    pytest.param(segment('-o', '@o.png'), ('o.png', '.tif'), id='segment-out-png'),
    pytest.param(segment('-o', '@o.gpkg'), ('o.gpkg', '.tif'), id='segment-out-gpkg'),
    pytest.param(
        segment('-o', '@o.tif', '--vector', '@o.txt'),
        ('o.txt', '.gpkg'),
        id='segment-vector-txt',
    ),
    pytest.param(detect('-o', '@o.tif'), ('o.tif', '.gpkg'), id='detect-out-tif'),
    pytest.param(detect('-o', '@o.txt'), ('o.txt', '.gpkg'), id='detect-out-txt'),
    # Outputs that cannot be written: a folder, under a file, unwritable place.
    pytest.param(
        anomaly('-o', '@folder.tif'),
        ('folder.tif', 'folder'),
        id='anomaly-out-is-folder',
    ),
    pytest.param(
        segment('-o', '@folder.tif'),
        ('folder.tif', 'folder'),
        id='segment-out-is-folder',
    ),
    pytest.param(
        detect('-o', '@folder.gpkg'),
        ('folder.gpkg', 'folder'),
        id='detect-out-is-folder',
    ),
    pytest.param(
        anomaly('-o', '@scene.tif/o.tif'),
        ('o.tif', 'is a file'),
        id='anomaly-out-under-a-file',
    ),
    pytest.param(
        segment('-o', '@seg.tif/o.tif'),
        ('o.tif', 'is a file'),
        id='segment-out-under-a-file',
    ),
    pytest.param(
        anomaly('-o', '/proc/torchgeo-ext/o.tif'),
        ('o.tif', 'cannot write'),
        id='anomaly-out-unwritable',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '/proc/torchgeo-ext/o.gpkg'),
        ('o.gpkg', 'cannot write'),
        id='anomaly-vector-unwritable',
    ),
    pytest.param(
        detect('-o', '/proc/torchgeo-ext/o.gpkg'),
        ('o.gpkg', 'cannot write'),
        id='detect-out-unwritable',
    ),
    pytest.param(
        segment('-o', '/proc/torchgeo-ext/o.tif'),
        ('o.tif', 'cannot write'),
        id='segment-out-unwritable',
    ),
    pytest.param(
        demo('-o', '@file.txt'), ('file.txt', 'existing file'), id='demo-out-is-file'
    ),
    pytest.param(
        demo('-o', '/proc/torchgeo-ext/demo'),
        ('demo', 'cannot write'),
        id='demo-out-unwritable',
    ),
    pytest.param(
        fyh('-o', '@file.txt'), ('file.txt', 'existing file'), id='fyh-out-is-file'
    ),
    pytest.param(
        demo('--task', 'detection', '-o', '@file.txt'),
        ('file.txt', 'existing file'),
        id='demo-detection-out-is-file',
    ),
    pytest.param(
        demo('--task', 'detection', '-o', '@demo', '--steps', '0'),
        ('--steps', 'positive'),
        id='demo-detection-steps-0',
    ),
    pytest.param(
        fyh('-o', '/proc/torchgeo-ext/fyh'),
        ('fyh', 'cannot write'),
        id='fyh-out-unwritable',
    ),
    # detect: the bands must be exactly those the model reads.
    pytest.param(
        detect('-o', '@o.gpkg', inputs='rgb,ir,extra'),
        ('extra.tif', '5 bands', 'reads 4'),
        id='detect-too-many-bands',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', inputs='rgb'),
        ('rgb.tif', '3 bands', 'reads 4'),
        id='detect-too-few-bands',
    ),
    # LRX/CRD on rasters smaller than their windows.
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'lrx', input='tiny.tif'),
        ('tiny.tif', 'too small'),
        id='anomaly-lrx-raster-smaller-than-window',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'crd', input='tiny.tif'),
        ('tiny.tif', 'too small'),
        id='anomaly-crd-raster-smaller-than-window',
    ),
    # Option values.
    pytest.param(
        anomaly('-o', '@o.tif', '--tile-size', '0'),
        ('--tile-size', 'positive'),
        id='anomaly-tile-size-0',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--tile-size', 'abc'),
        ('--tile-size', 'integer'),
        id='anomaly-tile-size-text',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'lrx', '--inner', '4'),
        ('--inner', 'odd'),
        id='anomaly-inner-even',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'lrx', '--outer', '0'),
        ('--outer', 'positive'),
        id='anomaly-outer-0',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'lrx', '--inner', '9', '--outer', '5'),
        ('outer',),
        id='anomaly-outer-inside-inner',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'bsdm', '--iterations', '0'),
        ('--iterations', 'positive'),
        id='anomaly-iterations-0',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@o.gpkg', '--threshold', 'nan'),
        ('--threshold', 'NaN'),
        id='anomaly-threshold-nan',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@o.gpkg', '--threshold', '1.5'),
        ('--threshold', '1.5'),
        id='anomaly-threshold-above-1',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--vector', '@o.gpkg', '--min-area', '-1'),
        ('--min-area', 'negative'),
        id='anomaly-min-area-negative',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--threshold', '0.99'),
        ('--threshold', '--vector'),
        id='anomaly-threshold-without-vector',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--min-area', '3'),
        ('--min-area', '--vector'),
        id='anomaly-min-area-without-vector',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--tile-size', '-1'),
        ('--tile-size', 'positive'),
        id='detect-tile-size-negative',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--batch-size', '0'),
        ('--batch-size', 'positive'),
        id='detect-batch-size-0',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--overlap', '-1'),
        ('--overlap', 'negative'),
        id='detect-overlap-negative',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--tile-size', '64', '--overlap', '64'),
        ('--overlap', '--tile-size'),
        id='detect-overlap-not-below-tile',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--iou', '1.5'),
        ('--iou', '[0, 1]'),
        id='detect-iou-above-1',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--iou', 'nan'), ('--iou', 'NaN'), id='detect-iou-nan'
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--score-threshold', 'nan'),
        ('--score-threshold', 'NaN'),
        id='detect-score-threshold-nan',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--score-threshold', '-0.1'),
        ('--score-threshold', '[0, 1]'),
        id='detect-score-threshold-negative',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--scale', '0'),
        ('--scale', 'positive'),
        id='detect-scale-0',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--tile-size', '0'),
        ('--tile-size', 'positive'),
        id='segment-tile-size-0',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--batch-size', '-2'),
        ('--batch-size', 'positive'),
        id='segment-batch-size-negative',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--overlap', '-1'),
        ('--overlap', 'negative'),
        id='segment-overlap-negative',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--tile-size', '16', '--overlap', '16'),
        ('overlap',),
        id='segment-overlap-not-below-tile',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--min-area', 'nan'),
        ('--min-area', 'NaN'),
        id='segment-min-area-nan',
    ),
    pytest.param(
        fyh('-o', '@fyh', '--max-fill', '-1'),
        ('--max-fill', 'negative'),
        id='fyh-max-fill-negative',
    ),
    pytest.param(
        fyh('-o', '@fyh', '--tolerance-minutes', 'nan'),
        ('--tolerance-minutes', 'NaN'),
        id='fyh-tolerance-nan',
    ),
    pytest.param(
        fyh('-o', '@fyh', '--tolerance-minutes', '-5'),
        ('--tolerance-minutes', 'negative'),
        id='fyh-tolerance-negative',
    ),
    pytest.param(
        demo('-o', '@demo', '--size', '0'), ('--size', 'at least 8'), id='demo-size-0'
    ),
    pytest.param(
        demo('-o', '@demo', '--size', '3'),
        ('--size', 'at least 8'),
        id='demo-size-too-small',
    ),
    pytest.param(
        demo('-o', '@demo', '--bands', '1'),
        ('--bands', 'at least 2'),
        id='demo-bands-1',
    ),
    pytest.param(
        demo('-o', '@demo', '--bands', 'x'),
        ('--bands', 'integer'),
        id='demo-bands-text',
    ),
    pytest.param(
        demo('-o', '@demo', '--methods', 'rx,nope'),
        ('--methods', 'nope'),
        id='demo-unknown-method',
    ),
    # Devices.
    pytest.param(
        detect('-o', '@o.gpkg', '--device', 'tpu'),
        ('--device', 'tpu'),
        id='detect-unknown-device',
    ),
    pytest.param(
        segment('-o', '@o.tif', '--device', 'gpu0'),
        ('--device', 'gpu0'),
        id='segment-unknown-device',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', '--device', 'cuda'),
        ('--device', 'no cuda device'),
        id='detect-cuda-without-gpu',
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present'),
    ),
    pytest.param(
        segment('-o', '@o.tif', '--device', 'cuda:0'),
        ('--device', 'no cuda device'),
        id='segment-cuda-without-gpu',
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is present'),
    ),
    # Checkpoints: wrong kind (named before any band count), missing, unreadable, misfit.
    pytest.param(
        detect('-o', '@o.gpkg', checkpoint='dianet'),
        ('dianet.ckpt', 'segmentation checkpoint', 'needs a detection'),
        id='detect-segmentation-checkpoint',
    ),
    pytest.param(
        segment('-o', '@o.tif', checkpoint='superyolo'),
        ('superyolo.ckpt', 'detection checkpoint', 'needs a segmentation'),
        id='segment-detection-checkpoint',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', checkpoint='missing.ckpt'),
        ('missing.ckpt', 'not found'),
        id='detect-checkpoint-missing',
    ),
    pytest.param(
        segment('-o', '@o.tif', checkpoint='missing.ckpt'),
        ('missing.ckpt', 'not found'),
        id='segment-checkpoint-missing',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', checkpoint='truncated'),
        ('truncated.ckpt', 'not a readable checkpoint'),
        id='detect-checkpoint-truncated',
    ),
    pytest.param(
        segment('-o', '@o.tif', checkpoint='not_checkpoint'),
        ('notes.ckpt', 'not a readable checkpoint'),
        id='segment-not-a-checkpoint',
    ),
    pytest.param(
        segment('-o', '@o.tif', checkpoint='bad_weights'),
        ('bad_weights.ckpt', 'weights do not fit'),
        id='segment-weights-do-not-fit',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'bsdm', '--checkpoint', '@notes.ckpt'),
        ('notes.ckpt',),
        id='anomaly-bsdm-not-a-checkpoint',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'stad', '--checkpoint', '@dianet.ckpt'),
        ('dianet.ckpt', 'STAD'),
        id='anomaly-stad-wrong-checkpoint',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'stad', '--checkpoint', '@truncated.ckpt'),
        ('truncated.ckpt',),
        id='anomaly-stad-truncated-checkpoint',
    ),
    # Inputs that are missing, not rasters, or corrupt (found mid-read).
    pytest.param(
        anomaly('-o', '@o.tif', input='missing.tif'),
        ('missing.tif',),
        id='anomaly-input-missing',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', input='text.tif'),
        ('text.tif',),
        id='anomaly-input-not-a-raster',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', input='cut.tif'),
        ('cut.tif', 'rows'),
        id='anomaly-rx-truncated-raster',
    ),
    pytest.param(
        anomaly('-o', '@o.tif', '--method', 'lrx', input='cut.tif'),
        ('cut.tif',),
        id='anomaly-lrx-truncated-raster',
    ),
    pytest.param(
        detect('-o', '@o.gpkg', inputs='rgbcut,ir'),
        ('rgbcut.tif', 'rows'),
        id='detect-truncated-raster',
    ),
    pytest.param(
        segment('-o', '@o.tif'), ('seg.tif', 'rows'), id='segment-truncated-raster'
    ),
]


def prepare(work: Path, assets: Assets, argv: list[str], probe_id: str) -> None:
    """Create what a probe's paths refer to (links, folders, broken files)."""
    os.symlink(
        work / ('seg.tif' if 'segment' in probe_id else 'scene.tif'), work / 'link.tif'
    )
    os.link(work / 'scene.tif', work / 'hard.tif')
    (work / 'folder.tif').mkdir()
    (work / 'folder.gpkg').mkdir()
    (work / 'file.txt').write_text('a file\n')
    (work / 'text.tif').write_text('not a raster\n')
    for name in ('dianet', 'truncated', 'not_checkpoint'):
        source = getattr(assets, name)
        shutil.copy(source, work / source.name)
    # Rasters cut short: the header (and the first rows) still read.
    big = write_raster(work / 'cut.tif', 8, 128, 128, 'float32')
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    cut = write_raster(work / 'rgbcut.tif', 3, 40, 40)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    if probe_id == 'segment-truncated-raster':
        seg = work / 'seg.tif'
        seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])


@pytest.mark.parametrize(('command', 'names'), REFUSED)
def test_refused(
    command: Argv,
    names: tuple[str, ...],
    assets: Assets,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    probe_id = request.node.callspec.id
    argv = at(work, command(assets, work))
    prepare(work, assets, argv, probe_id)
    if probe_id.startswith(('demo', 'fyh')) and '-o' not in argv:
        raise AssertionError('probe without output')
    old = Path.cwd()
    os.chdir(work)  # relative default outputs (demo_output) land here
    try:
        probe_refused(argv, names, assets, work, capsys)
    finally:
        os.chdir(old)


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes read-only files')
@pytest.mark.parametrize('command', ['anomaly', 'segment'])
def test_read_only_output(
    command: str, assets: Assets, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = work / 'o.tif'
    out.write_text('keep me\n')
    out.chmod(0o444)
    argv = (anomaly if command == 'anomaly' else segment)('-o', str(out))(assets, work)
    probe_refused(argv, ('o.tif', 'read-only'), assets, work, capsys)


# --- things that must work ----------------------------------------------------


@pytest.mark.parametrize(('height', 'width'), [(1, 1), (3, 3), (50, 70)])
def test_detect_small_rasters_boxes_inside(
    height: int,
    width: int,
    assets: Assets,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Rasters smaller than a tile: the tile is padded, boxes clipped to the raster.
    rgb = write_raster(tmp_path / 'rgb.tif', 3, height, width)
    ir = write_raster(tmp_path / 'ir.tif', 1, height, width)
    out = tmp_path / 'boxes.gpkg'
    argv = [
        'detect',
        str(rgb),
        str(ir),
        '-o',
        str(out),
        '--checkpoint',
        str(assets.box),
    ]
    status, err = run(argv, capsys)
    assert status == 0, err
    with rasterio.open(rgb) as src:
        left, bottom, right, top = src.bounds
    gdf = gpd.read_file(out)
    assert len(gdf) >= 1
    minx, miny, maxx, maxy = gdf.total_bounds
    eps = 1e-6
    assert left - eps <= minx
    assert maxx <= right + eps
    assert bottom - eps <= miny
    assert maxy <= top + eps
    assert all(geom.area > 0 for geom in gdf.geometry)


def test_detect_small_tile_adapts_default_overlap(
    assets: Assets, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = work / 'o.gpkg'
    argv = detect('-o', str(out), '--tile-size', '32', checkpoint='box')(assets, work)
    status, err = run(argv, capsys)
    assert status == 0, err
    assert out.exists()


@pytest.mark.parametrize('method', ['rx', 'lrx', 'crd', 'bsdm'])
def test_progress_for_every_method(
    method: str, assets: Assets, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ['--iterations', '2'] if method == 'bsdm' else []
    argv = anomaly('-o', str(work / 'o.tif'), '--method', method, '--progress', *extra)(
        assets, work
    )
    status, err = run(argv, capsys)
    assert status == 0, err
    assert '100%' in err, err


# --- outputs are all-or-nothing -------------------------------------------------


@pytest.mark.parametrize('existing', [False, True])
@pytest.mark.parametrize('command', ['anomaly', 'segment'])
def test_failure_after_first_output_rolls_back(
    command: str,
    existing: bool,
    assets: Assets,
    work: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The vector file fails after the raster was renamed into place: the raster
    # goes too, and a file it replaced comes back.
    from torchgeo_ext.export import vector

    def broken(path: object, gdf: object, **kwargs: object) -> None:
        raise OSError(28, 'No space left on device', str(path))

    monkeypatch.setattr(vector, 'write_vector', broken)
    if command == 'segment':
        import torchgeo_ext.pipelines.segmentation as module
    else:
        import torchgeo_ext.pipelines.anomaly as module  # type: ignore[no-redef]
    monkeypatch.setattr(module, 'write_vector', broken, raising=False)
    out, vec = work / 'o.tif', work / 'o.gpkg'
    if existing:
        out.write_text('previous result\n')
    argv = (anomaly if command == 'anomaly' else segment)(
        '-o', str(out), '--vector', str(vec)
    )(assets, work)
    before = tree(work)
    status, err = run(argv, capsys)
    assert status == 2, err
    assert_one_line(err, 'o.gpkg', 'No space left')
    assert tree(work) == before


def test_bad_option_checked_before_any_work(
    assets: Assets, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bad vector extension is found before the score GeoTIFF is written.
    argv = anomaly('-o', str(work / 'o.tif'), '--vector', str(work / 'o.kml'))(
        assets, work
    )
    probe_refused(argv, ('o.kml',), assets, work, capsys)


# --- Lightning subcommands ----------------------------------------------------


def lightning_argv(sub: str, work: Path, *extra: str) -> list[str]:
    return [
        sub,
        '--config',
        str(CONF / 'dianet_fyh.yaml'),
        '--data.init_args.root',
        str(REPO / 'tests' / 'data' / 'fyh'),
        '--trainer.default_root_dir',
        str(work / 'runs'),
        '--trainer.logger',
        'true',
        *extra,
    ]


def last_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert 'Traceback' not in err, err
    return lines[-1]


WRITER = 'torchgeo_ext.export.writer.GeoPredictionWriter'
LIGHTNING: list[object] = [
    pytest.param(
        (
            'predict',
            f'--trainer.callbacks+={WRITER}',
            '--trainer.callbacks.output_dir=@file.txt',
        ),
        ('file.txt', 'existing file'),
        id='predict-writer-output-is-file',
    ),
    pytest.param(
        (
            'predict',
            f'--trainer.callbacks+={WRITER}',
            '--trainer.callbacks.output_dir=/proc/torchgeo-ext/p',
        ),
        ('/proc/torchgeo-ext/p', 'cannot write'),
        id='predict-writer-output-unwritable',
    ),
    pytest.param(
        ('fit', '--data.init_args.root', '@nowhere'),
        ('nowhere', 'not found'),
        id='fit-dataset-root-missing',
    ),
    pytest.param(
        ('validate', '--ckpt_path', '@missing.ckpt'),
        ('missing.ckpt', 'not found'),
        id='validate-ckpt-missing',
    ),
    pytest.param(
        ('validate', '--ckpt_path', '@notes.ckpt'),
        ('notes.ckpt', 'not a readable checkpoint'),
        id='validate-not-a-checkpoint',
    ),
    pytest.param(
        ('test', '--ckpt_path', '@truncated.ckpt'),
        ('truncated.ckpt', 'not a readable checkpoint'),
        id='test-ckpt-truncated',
    ),
    pytest.param(
        ('validate', '--ckpt_path', '@superyolo.ckpt'),
        ('superyolo.ckpt', 'SuperYOLOTask', 'SegmentationTask'),
        id='validate-ckpt-of-another-model',
    ),
    pytest.param(
        ('fit', '--ckpt_path', '@folder'), ('folder', 'folder'), id='fit-ckpt-is-folder'
    ),
    pytest.param(
        ('validate', '--ckpt_path', '@bad_weights.ckpt'),
        ('bad_weights.ckpt', 'weights do not fit'),
        id='validate-ckpt-weights-do-not-fit',
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(('args', 'names'), LIGHTNING)
def test_lightning_refused(
    args: tuple[str, ...],
    names: tuple[str, ...],
    assets: Assets,
    work: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ('truncated', 'not_checkpoint', 'superyolo', 'bad_weights'):
        source = getattr(assets, name)
        shutil.copy(source, work / source.name)
    (work / 'folder').mkdir()
    (work / 'file.txt').write_text('a file\n')
    sub, *extra = args
    argv = at(work, lightning_argv(sub, work, *extra))
    before, shared = tree(work), tree(assets.root)
    status, err = run(argv, capsys)
    assert status == 2, err
    line = last_line(err)
    assert line.startswith(f'torchgeo-ext {sub}: error:'), line
    for name in names:
        assert name in line, line
    # No lightning_logs/version_N (nor the run folder) left behind.
    assert tree(work) == before
    assert tree(assets.root) == shared


def test_declared_outputs_are_known_options() -> None:
    # Every io_outputs/io_inputs dest a subcommand declares is one of its options.
    from torchgeo_ext.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == 'command')
    for name, subparser in sub.choices.items():  # type: ignore[union-attr]
        dests = {a.dest for a in subparser._actions}
        defaults = subparser._defaults
        for dest, kind in defaults.get('io_outputs', ()):
            assert dest in dests, (name, dest)
            assert kind in ('raster', 'vector', 'file', 'directory')
        for dest in defaults.get('io_inputs', ()):
            assert dest in dests, (name, dest)


def test_every_option_value_is_validated() -> None:
    # Numbers and devices go through the types of torchgeo_ext.commands._options (one-line
    # errors for 0, negatives, NaN, ...), and every subcommand writing files
    # declares them for the output checks.
    from torchgeo_ext.cli import build_parser
    from torchgeo_ext.commands import _options as options

    known = {getattr(options, name) for name in options.__all__ if name != 'at_least'}
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == 'command')
    for name, subparser in sub.choices.items():  # type: ignore[union-attr]
        for action in subparser._actions:
            if action.type in (int, float):
                raise AssertionError(
                    f'{name} {action.option_strings}: bare {action.type}'
                )
            if action.type is not None and action.type not in known:
                assert getattr(action.type, '__qualname__', '').startswith(
                    'at_least'
                ), (name, action.option_strings)
        dests = {a.dest for a in subparser._actions}
        if 'output' in dests:
            declared = dict(subparser._defaults.get('io_outputs', ()))
            assert 'output' in declared, name
        if 'device' in dests:
            device = next(a for a in subparser._actions if a.dest == 'device')
            assert device.type is options.device, name
