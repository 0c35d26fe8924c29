import os
import signal
from pathlib import Path

import pytest

from torchgeo_ext.errors import Interrupted, InvalidInputError
from torchgeo_ext.export.atomic import (
    atomic_output,
    check_writable,
    make_output_dir,
    output_transaction,
    registered_temporaries,
    temporary_directory,
)
from torchgeo_ext.export.outputs import (
    Output,
    check_outputs,
    directory_output,
    file_output,
    input_files,
    non_local,
    raster_output,
    same_file,
    vector_output,
)


def write(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def test_same_file_resolves_links_and_dotdot(tmp_path: Path) -> None:
    a = tmp_path / 'a.tif'
    a.write_text('x')
    (tmp_path / 'link.tif').symlink_to(a)
    os.link(a, tmp_path / 'hard.tif')
    assert same_file(a, tmp_path / 'link.tif')
    assert same_file(a, tmp_path / 'hard.tif')
    assert same_file(a, tmp_path / 'sub' / '..' / 'a.tif')
    assert not same_file(a, tmp_path / 'b.tif')


def test_check_outputs_order_and_messages(tmp_path: Path) -> None:
    scene = tmp_path / 'scene.tif'
    scene.write_text('x')
    with pytest.raises(InvalidInputError, match='is the input'):
        check_outputs([raster_output(scene)], [scene])
    with pytest.raises(InvalidInputError, match='same file'):
        check_outputs(
            [raster_output(tmp_path / 'o.tif'), vector_output(tmp_path / 'o.tif')]
        )
    with pytest.raises(InvalidInputError, match=r'\.tif, \.tiff'):
        check_outputs([raster_output(tmp_path / 'o.png')])
    with pytest.raises(InvalidInputError, match=r'\.gpkg'):
        check_outputs([vector_output(tmp_path / 'o.shp')])
    with pytest.raises(InvalidInputError, match=r'\.csv'):
        check_outputs([file_output(tmp_path / 'o.txt', suffixes=['.csv'])])
    with pytest.raises(InvalidInputError, match='existing file'):
        check_outputs([directory_output(scene)])
    # Nothing was created by the checks, and good outputs pass.
    assert sorted(p.name for p in tmp_path.iterdir()) == ['scene.tif']
    out = check_outputs(
        [
            raster_output(tmp_path / 'new' / 'o.tif'),
            None,
            directory_output(tmp_path / 'd'),
        ],
        [scene, None],
    )
    assert out == [tmp_path / 'new' / 'o.tif', tmp_path / 'd']
    assert not (tmp_path / 'new').exists()


def test_check_writable_does_not_create_folders(tmp_path: Path) -> None:
    check_writable(tmp_path / 'a' / 'b' / 'o.tif')
    assert list(tmp_path.iterdir()) == []
    (tmp_path / 'f').write_text('x')
    with pytest.raises(InvalidInputError, match='is a file'):
        check_writable(tmp_path / 'f' / 'o.tif')


def fail_after_two_outputs(tmp_path: Path, kept: Path) -> None:
    with output_transaction():
        write(kept, 'new')
        write(tmp_path / 'deep' / 'er' / 'new.txt', 'new')
        make_output_dir(tmp_path / 'made')
        assert kept.read_text() == 'new'
        raise RuntimeError('fails after two outputs')


def test_transaction_rolls_back_outputs_and_folders(tmp_path: Path) -> None:
    kept = tmp_path / 'kept.txt'
    kept.write_text('old')
    with pytest.raises(RuntimeError):
        fail_after_two_outputs(tmp_path, kept)
    assert kept.read_text() == 'old'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['kept.txt']
    assert registered_temporaries() == []


def test_transaction_commits(tmp_path: Path) -> None:
    kept = tmp_path / 'kept.txt'
    kept.write_text('old')
    with output_transaction():
        write(kept, 'new')
        with output_transaction():  # nested blocks join the outer one
            write(tmp_path / 'b.txt', 'b')
    assert kept.read_text() == 'new'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['b.txt', 'kept.txt']


def interrupted_while_writing(tmp_path: Path) -> None:
    with output_transaction(), temporary_directory(dir=tmp_path) as folder:
        (folder / 'part').write_text('x')
        with atomic_output(tmp_path / 'o.tif') as tmp:
            tmp.write_text('half')
            raise Interrupted(signal.SIGTERM)


def test_interrupted_inside_writer_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Interrupted):
        interrupted_while_writing(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert Interrupted(signal.SIGINT).exit_status == 130
    assert Interrupted(signal.SIGTERM).exit_status == 143


def signal_after(monkeypatch: pytest.MonkeyPatch, call: str) -> None:
    """Make ``os.<call>`` act, then raise as a signal landing right after it would."""
    real = getattr(os, call)

    def then_signal(*args: object, **kwargs: object) -> None:
        real(*args, **kwargs)
        raise Interrupted(signal.SIGTERM)

    monkeypatch.setattr(os, call, then_signal)


def test_signal_right_after_temporary_folder_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI turns a signal into an exception between two bytecodes: one landing
    # just after the folder exists must still find it registered for cleanup.
    signal_after(monkeypatch, 'mkdir')
    with (
        pytest.raises(Interrupted),
        output_transaction(),
        temporary_directory(dir=tmp_path),
    ):
        pass
    assert list(tmp_path.iterdir()) == []
    assert registered_temporaries() == []


@pytest.mark.parametrize('call', ['mkdir', 'replace'])
def test_signal_right_after_output_folder_or_rename(
    call: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As above, for the folders a transaction creates and the renames it makes.
    def command() -> None:
        out = tmp_path / 'new' / 'nested' / 'o.txt'
        with output_transaction():
            if call == 'replace':
                make_output_dir(out.parent)
            signal_after(monkeypatch, call)
            make_output_dir(out.parent)
            write(out, 'x')

    with pytest.raises(Interrupted):
        command()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert registered_temporaries() == []


def test_input_files_follow_what_gdal_reads(tmp_path: Path) -> None:
    import zipfile

    scene = tmp_path / 'scene.tif'
    scene.write_text('x')
    for side in ('scene.tif.aux.xml', 'scene.tif.ovr', 'scene.tif.msk', 'scene.TFW'):
        (tmp_path / side).write_text('x')
    (tmp_path / 'unrelated.tfw').write_text('x')
    found = {path.name: why for path, why in input_files(scene)}
    assert found == {
        'scene.tif': '',
        'scene.tif.aux.xml': f'a side file of {scene}',
        'scene.tif.ovr': f'a side file of {scene}',
        'scene.tif.msk': f'a side file of {scene}',
        'scene.TFW': f'a side file of {scene}',
    }
    # A VRT naming itself (and a VRT of it, by vrt:// with options) ends.
    loop = tmp_path / 'loop.vrt'
    loop.write_text(
        '<VRTDataset><VRTRasterBand><SimpleSource>'
        '<SourceFilename relativeToVRT="1">loop.vrt</SourceFilename>'
        '</SimpleSource><SimpleSource>'
        '<SourceFilename relativeToVRT="1">vrt://scene.tif?bands=1</SourceFilename>'
        '</SimpleSource></VRTRasterBand></VRTDataset>'
    )
    names = [path.name for path, _ in input_files(loop)]
    assert names[:2] == ['loop.vrt', 'scene.tif']
    # A /vsizip/ member reads its archive; URLs read nothing local.
    archive = tmp_path / 'scenes.zip'
    with zipfile.ZipFile(archive, 'w') as z:
        z.writestr('inner/scene.tif', 'x')
    assert input_files(f'/vsizip/{archive}/inner/scene.tif') == [
        (archive, 'the archive it reads')
    ]
    assert input_files(f'/vsizip/{{{archive}}}/inner/scene.tif')[0][0] == archive
    assert input_files('s3://bucket/scene.tif') == []
    assert input_files('/vsicurl/https://host/scene.tif') == []
    assert input_files(f'NETCDF:"{scene}":band')[0] == (scene, '')


def test_outputs_on_what_an_input_reads_are_refused(tmp_path: Path) -> None:
    import zipfile

    scene = tmp_path / 'scene.tif'
    scene.write_text('x')
    (tmp_path / 'scene.tif.aux.xml').write_text('<PAMDataset/>')
    with pytest.raises(InvalidInputError, match='side file'):
        check_outputs([file_output(tmp_path / 'scene.tif.aux.xml')], [scene])
    archive = tmp_path / 'scenes.zip'
    with zipfile.ZipFile(archive, 'w') as z:
        z.writestr('scene.tif', 'x')
    with pytest.raises(InvalidInputError, match='archive'):
        check_outputs([file_output(archive)], [f'/vsizip/{archive}/scene.tif'])
    # Another output beside them is fine.
    check_outputs([raster_output(tmp_path / 'o.tif')], [scene, archive])


@pytest.mark.parametrize(
    'path', ['s3://bucket/o.tif', 'gs://b/o.gpkg', 'https://h/o.tif', '/vsis3/b/o.tif']
)
def test_non_local_outputs_are_refused(path: str, tmp_path: Path) -> None:
    kind = 'virtual path' if path.startswith('/vsi') else 'URL'
    assert non_local(path) == ('a GDAL virtual path' if kind != 'URL' else 'a URL')
    for make in (raster_output, vector_output, file_output, directory_output):
        with pytest.raises(InvalidInputError, match=kind):
            make(path)
    # Even after Path() collapsed '//' (the Python API takes paths).
    with pytest.raises(InvalidInputError, match=kind):
        check_outputs([Output(Path(path), 'raster')])
    with pytest.raises(InvalidInputError, match=kind):
        check_writable(path)
    with pytest.raises(InvalidInputError, match=kind), atomic_output(Path(path)):
        pass
    assert non_local(tmp_path / 'o.tif') is None
    assert non_local('C:/data/o.tif') is None  # a drive letter is no scheme


def test_writer_errors_name_the_output(tmp_path: Path) -> None:
    import errno

    out = tmp_path / 'o.tif'

    # An OSError about the temporary file (or a side file of it) names the output.
    def fail(tmp: Path) -> None:
        side = tmp.with_name(tmp.name + '.stream.tif')
        raise PermissionError(errno.EACCES, 'Permission denied', str(side))

    with (
        pytest.raises(OSError, match='Permission denied') as info,
        atomic_output(out) as tmp,
    ):
        fail(tmp)
    assert info.value.filename == str(out)
    assert info.value.errno == errno.EACCES
    assert '.tmp-' not in str(info.value)
    # Bad input and unrelated errors pass through unchanged.
    with pytest.raises(InvalidInputError, match='bands'), atomic_output(out):
        raise InvalidInputError(out, 'wrong bands')
    with pytest.raises(KeyError), atomic_output(out):
        raise KeyError('x')
    assert list(tmp_path.iterdir()) == []


def test_disk_full_found_by_free_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import shutil

    from rasterio.errors import RasterioIOError

    out = tmp_path / 'o.tif'
    real = shutil.disk_usage

    def full(path: object) -> object:
        usage = real(path)  # type: ignore[arg-type]
        return type(usage)(usage.total, usage.total, 0)

    monkeypatch.setattr(shutil, 'disk_usage', full)

    # GDAL reports ENOSPC on stderr only, then raises an unrelated message.
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b'half a raster')
        raise RasterioIOError('TIFFAppendToStrip:Seek error at scanline 0')

    with (
        pytest.raises(OSError, match='No space left') as info,
        atomic_output(out) as tmp,
    ):
        fail(tmp)
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(out)
    assert str(out.parent) in str(info.value)
    assert list(tmp_path.iterdir()) == []
